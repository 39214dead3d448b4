"""Streaming readers for the parallel formats users have: line-aligned files, TSV pairs, gzip/xz, directories.

- ``--src A --tgt B``: line i of A translates line i of B. A and B may each be a directory: its files, sorted by name,
  are read as one long file (so ``src/000.en, src/001.en`` pair with ``tgt/000.fr, tgt/001.fr``).
- ``--tsv F``: one pair per line, ``source<TAB>target``; F may be a directory of such files (sorted by name).
- Any file ending in ``.gz`` or ``.xz`` is decompressed on the fly (the standard library's gzip / lzma).

Reading is line by line, never the whole file, so memory does not grow with the corpus. A line that is not UTF-8, or
a TSV line without exactly one tab, is *malformed*: it is skipped, counted, and the first few are reported with file
and line number (in the manifest and on stderr), never dropped silently. A pair with an empty side after cleaning is
skipped as before (it is not an error: blank lines are common). Keys are ``l<global line index>``, as before.
"""

from __future__ import annotations

import gzip
import lzma
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO

from pipeline.data.text import clean_text

MAX_REPORTED = 20


@dataclass
class Malformed:
    """Count of malformed lines and the first ``MAX_REPORTED`` of them as ``file:line: reason``."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, path: Path, line: int, reason: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_REPORTED:
            self.examples.append(f"{path}:{line}: {reason}")

    def to_manifest(self) -> dict:
        return {"count": self.count, "first": list(self.examples)}


def expand(path: Path) -> list[Path]:
    """A file, or the regular files of a directory sorted by name (hidden files skipped)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"corpus directory has no files: {path}")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    return [path]


def open_binary(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix == ".xz":
        return lzma.open(path, "rb")
    return path.open("rb")


def raw_lines(paths: list[Path]) -> Iterator[tuple[Path, int, bytes]]:
    """(file, 1-based line number, line bytes without the newline) over several files in order."""
    for path in paths:
        try:
            with open_binary(path) as f:
                for number, line in enumerate(f, start=1):
                    yield path, number, line.rstrip(b"\r\n")
        except (OSError, EOFError, lzma.LZMAError) as exn:
            raise ValueError(f"cannot read {path}: {exn}") from exn


def decode_line(path: Path, number: int, data: bytes, malformed: Malformed) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exn:
        malformed.add(path, number, f"not UTF-8 ({exn.reason} at byte {exn.start})")
        return None


def clean_lines(paths: list[Path], malformed: Malformed) -> Iterator[str]:
    """The non-empty cleaned lines of ``paths`` in order; lines that are not UTF-8 are counted in ``malformed``."""
    for path, number, data in raw_lines(paths):
        if (text := decode_line(path, number, data, malformed)) is not None and (line := clean_text(text)):
            yield line


def count_lines(paths: list[Path]) -> int:
    return sum(1 for _ in raw_lines(paths))


def parallel_pairs(
    src: Path, tgt: Path, malformed: Malformed, start: int = 0
) -> Iterator[tuple[str, str, str]]:
    """Cleaned (key, source, target) of two line-aligned files (or dirs); the caller checks equal line counts.

    ``start``: skip the first ``start`` lines unread (not decoded or cleaned): where a range of the input begins.
    """
    src_lines, tgt_lines = (
        islice(raw_lines(expand(src)), start, None),
        islice(raw_lines(expand(tgt)), start, None),
    )
    for i, ((sp, sn, sb), (tp, tn, tb)) in enumerate(zip(src_lines, tgt_lines), start):  # noqa: B905 (counted)
        s, t = decode_line(sp, sn, sb, malformed), decode_line(tp, tn, tb, malformed)
        if s is None or t is None:
            continue
        s, t = clean_text(s), clean_text(t)
        if s and t:
            yield f"l{i:08d}", s, t


def tsv_pairs(path: Path, malformed: Malformed, start: int = 0) -> Iterator[tuple[str, str, str]]:
    """Cleaned (key, source, target) of ``source<TAB>target`` lines (a file or a dir of files), from line ``start``."""
    for i, (p, number, data) in enumerate(islice(raw_lines(expand(path)), start, None), start):
        text = decode_line(p, number, data, malformed)
        if text is None or not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != 2:
            malformed.add(p, number, f"expected 2 tab-separated fields, found {len(fields)}")
            continue
        s, t = clean_text(fields[0]), clean_text(fields[1])
        if s and t:
            yield f"l{i:08d}", s, t
