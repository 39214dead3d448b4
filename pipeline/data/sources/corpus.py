"""Sources of (source, target) text pairs, already split into train / valid / test.

Four kinds of source, all described by a :class:`CorpusSource` whose ``describe()`` goes into the manifest:

- ``bible:SRC-TGT`` (default ``bible:4-l``): verse-aligned translations of the embedded corpus (``bible.py``,
  whole books held out).
- parallel files (``--src FILE --tgt FILE``): line i of one is the translation of line i of the other.
- TSV (``--tsv FILE``): ``source<TAB>target`` per line (``readers.py``).
- plain text (``--text FILE``): a next-sentence task; each non-empty line is the target of the non-empty line
  before it.
- documents (``--docs DIR``, language modelling only): one file a document, held out whole (``documents.py``).

User files are split into contiguous blocks (train first, then valid, then test; ``text.block_bounds``) rather
than interleaved, because neighbouring lines are near-duplicates and an interleaved split leaks. For plain text the lines are split first and pairs are formed inside each block, so no
line appears in two splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.data.manifest import sha256_file
from pipeline.data.sources.bible import (
    TEST_BOOKS,
    VALID_BOOKS,
    bible_pairs,
    is_monolingual,
    parse_bible_lm_spec,
    parse_bible_spec,
)
from pipeline.data.sources.documents import document_files
from pipeline.data.sources.readers import Malformed, expand, tsv_pairs
from pipeline.data.text import SPLITS, Example, block_bounds, clean_text


@dataclass(frozen=True)
class CorpusSource:
    """What to read. Exactly one of ``bible`` (a ``bible:X-Y`` spec), ``src``+``tgt``, ``text``, ``tsv`` or ``docs``
    is set."""

    bible: str | None = None
    src: Path | None = None
    tgt: Path | None = None
    text: Path | None = None
    valid_frac: float = 0.05
    test_frac: float = 0.05
    tsv: Path | None = None  # source<TAB>target lines (a file or a dir of files; see readers.py)
    docs: Path | None = None  # a directory of documents, one file each (language modelling; see documents.py)

    def __post_init__(self) -> None:
        kinds = [self.bible is not None, self.src is not None or self.tgt is not None, self.text is not None,
                 self.tsv is not None, self.docs is not None]  # fmt: skip
        if sum(kinds) != 1:
            raise ValueError(
                "give exactly one corpus: a bible spec, --src with --tgt, --tsv, --text or --docs"
            )
        if (self.src is None) != (self.tgt is None):
            raise ValueError(f"parallel text needs both --src and --tgt (got src={self.src}, tgt={self.tgt})")
        if self.bible is not None and is_monolingual(self.bible):
            parse_bible_lm_spec(self.bible)
        elif self.bible is not None:
            parse_bible_spec(self.bible)
        for name in ("valid_frac", "test_frac"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:  # 0 leaves the split empty, which no run can use
                raise ValueError(f"{name} must be in (0, 1), got {value}")
        if self.valid_frac + self.test_frac >= 1.0:
            raise ValueError(f"valid_frac + test_frac must be < 1, got {self.valid_frac} + {self.test_frac}")

    @property
    def spec(self) -> str:
        """A short human-readable name, e.g. ``bible:4-l`` or ``parallel:a.en|a.fr``."""
        if self.bible is not None:
            return self.bible
        if self.text is not None:
            return f"text:{self.text}"
        if self.tsv is not None:
            return f"tsv:{self.tsv}"
        if self.docs is not None:
            return f"docs:{self.docs}"
        return f"parallel:{self.src}|{self.tgt}"

    def describe(self) -> dict:
        """Everything that determines the pairs, including input-file hashes so edited files re-prepare."""
        info: dict = {"spec": self.spec}
        if self.docs is not None:
            info["sha256"] = {str(p): sha256_file(p) for p in document_files(self.docs)}
            info["valid_frac"], info["test_frac"] = self.valid_frac, self.test_frac
        elif self.bible is None:
            roots = (
                [self.text]
                if self.text is not None
                else [self.tsv]
                if self.tsv is not None
                else [self.src, self.tgt]
            )
            info["sha256"] = {str(p): sha256_file(p) for root in roots for p in expand(root)}
            info["valid_frac"], info["test_frac"] = self.valid_frac, self.test_frac
        else:
            info["valid_books"], info["test_books"] = list(VALID_BOOKS), list(TEST_BOOKS)
        return info


def parse_source(corpus: str | CorpusSource) -> CorpusSource:
    """Accept a ``CorpusSource`` or a spec string: ``bible:4-l``, ``parallel:SRC|TGT``, ``text:FILE``,
    ``tsv:FILE`` or ``docs:DIR``."""
    if isinstance(corpus, CorpusSource):
        return corpus
    kind, _, rest = corpus.partition(":")
    if kind == "bible":
        return CorpusSource(bible=corpus)
    if kind == "text" and rest:
        return CorpusSource(text=Path(rest))
    if kind == "tsv" and rest:
        return CorpusSource(tsv=Path(rest))
    if kind == "docs" and rest:
        return CorpusSource(docs=Path(rest))
    if kind == "parallel" and "|" in rest:
        src, tgt = rest.split("|", 1)
        return CorpusSource(src=Path(src), tgt=Path(tgt))
    raise ValueError(
        f"unknown corpus spec {corpus!r}: expected 'bible:SRC-TGT', 'parallel:SRC|TGT', 'tsv:FILE', 'text:FILE' or "
        "'docs:DIR'"
    )


def load_splits(source: CorpusSource) -> dict[str, list[Example]]:
    """Read, clean and split the corpus (pairs with an empty side are dropped)."""
    if source.bible is not None and is_monolingual(source.bible):
        raise ValueError(f"{source.bible} is monolingual text for data.task=lm, not translation pairs")
    if source.docs is not None:
        raise ValueError(f"{source.spec} is a directory of documents for data.task=lm, not translation pairs")
    if source.bible is not None:
        splits = bible_pairs(*parse_bible_spec(source.bible))
    elif source.tsv is not None:
        pairs = list(tsv_pairs(source.tsv, Malformed()))
        bounds = block_bounds(len(pairs), source.valid_frac, source.test_frac)
        splits = {name: pairs[a:b] for name, (a, b) in zip(SPLITS, bounds, strict=True)}
    elif source.text is not None:
        splits = _load_text(_existing(source.text), source.valid_frac, source.test_frac)
    else:
        assert source.src is not None and source.tgt is not None
        splits = _load_parallel(
            _existing(source.src), _existing(source.tgt), source.valid_frac, source.test_frac
        )
    return splits


def _load_parallel(src: Path, tgt: Path, valid_frac: float, test_frac: float) -> dict[str, list[Example]]:
    src_lines, tgt_lines = _read_lines(src), _read_lines(tgt)
    if len(src_lines) != len(tgt_lines):
        raise ValueError(
            f"parallel files are not line-aligned: {src} has {len(src_lines)} lines, {tgt} has {len(tgt_lines)}"
        )
    pairs = [
        (f"l{i:08d}", s, t)
        for i, (s, t) in enumerate(zip(map(clean_text, src_lines), map(clean_text, tgt_lines), strict=True))
        if s and t
    ]
    bounds = block_bounds(len(pairs), valid_frac, test_frac)
    return {name: pairs[a:b] for name, (a, b) in zip(SPLITS, bounds, strict=True)}


def _load_text(path: Path, valid_frac: float, test_frac: float) -> dict[str, list[Example]]:
    lines = [line for line in map(clean_text, _read_lines(path)) if line]
    bounds = block_bounds(len(lines), valid_frac, test_frac)
    return {
        name: [(f"l{i:08d}", lines[i], lines[i + 1]) for i in range(a, b - 1)]
        for name, (a, b) in zip(SPLITS, bounds, strict=True)
    }


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exn:
        raise ValueError(f"{path} is not UTF-8 text: {exn}") from exn


def _existing(path: Path | None) -> Path:
    assert path is not None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    return path
