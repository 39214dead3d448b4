"""``docs:DIR``: a language-modelling corpus of many documents, one file each, held out whole.

Why not ``text:``: ``text:FILE`` (or a directory read as one text) cuts its lines into three contiguous blocks, so
the held-out split is one document and a bootstrap can only resample its windows as if they were independent
(neighbouring windows of one book are not). A corpus such as PG-19 comes as one file per book; held out book by
book, each held-out book is a cluster the report resamples whole (``lm_clusters.py``: a document that is not a
Bible book is its own book and chapter).

Two layouts:

- ``DIR/train``, ``DIR/valid`` (or ``DIR/validation``, PG-19's name) and ``DIR/test`` subdirectories: the corpus's
  own split, kept as it is;
- otherwise the files of ``DIR`` (hidden files skipped): each is assigned to a split by a hash of its name
  (``valid_frac`` / ``test_frac`` of the documents in expectation, at least one each), so the assignment does not
  depend on the order files are listed in, spreads the held-out documents over the corpus, and a file keeps its
  split when others are added.

A document's text is its non-empty cleaned lines joined with newlines (gzip / xz files are read as in
``readers.py``; lines that are not UTF-8 are counted, never dropped silently). Document names are ``docs/<path
relative to DIR>``, unique and never taken for a Bible book.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.data.sources.readers import Malformed, clean_lines, expand
from pipeline.data.text import SPLITS

Document = tuple[str, str]  # (name, text)
SPLIT_DIRS = {"train": ("train",), "valid": ("valid", "validation"), "test": ("test",)}


def document_files(root: Path) -> list[Path]:
    """Every file the corpus reads, in a fixed order (for the manifest's hashes)."""
    split_dirs = _split_dirs(Path(root))
    if split_dirs is None:
        return expand(root)
    return [p for split in SPLITS for p in expand(split_dirs[split])]


def _split_dirs(root: Path) -> dict[str, Path] | None:
    """The corpus's own split directories, None when ``root`` has none; an error naming the missing one when it has
    some but not all three."""
    if not root.is_dir():
        raise FileNotFoundError(f"docs: corpus directory not found: {root}")
    found = {
        split: next((root / n for n in names if (root / n).is_dir()), None)
        for split, names in SPLIT_DIRS.items()
    }
    if not any(found.values()):
        return None
    missing = [f"{split} ({' or '.join(SPLIT_DIRS[split])})" for split, path in found.items() if path is None]
    if missing:
        raise ValueError(
            f"docs:{root} has split directories but not {', '.join(missing)}: give all three (train, valid or "
            "validation, test) or none (then its files are split by document)"
        )
    return {split: path for split, path in found.items() if path is not None}


def _share(name: str) -> float:
    """A uniform draw in [0, 1) fixed by the name alone."""
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) / 16**40


def split_by_name(names: list[str], valid_frac: float, test_frac: float, where: Path) -> dict[str, list[str]]:
    """Split -> document names, held out whole: a name whose hash share is below ``test_frac`` goes to test, below
    ``test_frac + valid_frac`` to valid, the rest to train, so a document keeps its split when others are added. A
    split that the shares leave empty (few documents) takes one document from the largest split."""
    if len(names) < 3:
        raise ValueError(
            f"docs:{where} has {len(names)} document file(s): holding out whole documents needs at least 3 (one "
            f"train, one valid, one test); add documents, or use text:{where} to split its lines into blocks"
        )
    ranked = sorted(names, key=_share)
    test = [n for n in ranked if _share(n) < test_frac]
    valid = [n for n in ranked if test_frac <= _share(n) < test_frac + valid_frac]
    train = [n for n in ranked if _share(n) >= test_frac + valid_frac]
    splits = {"train": train, "valid": valid, "test": test}
    for name in ("test", "valid", "train"):
        if not splits[name]:  # few documents: a split the shares left empty takes one from the largest
            donor = max((docs for other, docs in splits.items() if other != name), key=len)
            splits[name].append(donor.pop(0))
    return {split: sorted(docs) for split, docs in splits.items()}


def _read_document(path: Path, malformed: Malformed) -> str:
    return "\n".join(clean_lines([path], malformed))


def load_document_splits(
    root: Path, valid_frac: float, test_frac: float, malformed: Malformed
) -> dict[str, list[Document]]:
    """Split -> (name, text) of each document (see the module docstring); documents without text are skipped."""
    root = Path(root)
    split_dirs = _split_dirs(root)
    if split_dirs is None:
        files = {p.relative_to(root).as_posix(): p for p in expand(root)}
        paths = {s: [files[n] for n in names] for s, names in split_by_name(list(files), valid_frac, test_frac, root).items()}  # fmt: skip
    else:
        paths = {split: expand(split_dirs[split]) for split in SPLITS}
    out: dict[str, list[Document]] = {}
    for split, files in paths.items():
        docs = [(f"docs/{p.relative_to(root).as_posix()}", _read_document(p, malformed)) for p in files]
        out[split] = [(name, text) for name, text in docs if text]
    return out
