"""Text helpers every corpus shares: the split names, line cleaning, contiguous split blocks, the record shapes.

A leaf: the sources (``sources/``), preparation (``prepare/``) and the loader (``stream/``) all use it, and it
imports nothing of theirs.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

SPLITS = ("train", "valid", "test")

Example = tuple[str, str, str]  # (key, source text, target text); keys contain no dots (webdataset)
Record = tuple[
    str, str, str, "list[int] | np.ndarray", "list[int] | np.ndarray"
]  # key, src/tgt text, src/tgt ids

# Inline versification markers such as "(3:2) " or "(3:2b) " (Segond, Schlachter, Synodal, ...).
_VERSE_MARKER = re.compile(r"\(\d+[:.]\d+[a-z]?\)\s*")
_MISSING_VERSE = re.compile(r"\(\*\)")  # Elberfelder marks omitted verses as "(*)"
_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Normalise one line: NFC, no versification markers / soft hyphens / "(*)", single spaces."""
    text = unicodedata.normalize("NFC", text).replace("\u00ad", "")
    text = _MISSING_VERSE.sub(" ", _VERSE_MARKER.sub(" ", text))
    return _SPACES.sub(" ", text).strip()


def block_bounds(n: int, valid_frac: float, test_frac: float) -> list[tuple[int, int]]:
    """Contiguous [start, end) blocks for train/valid/test; a non-zero fraction gets at least one item.

    Blocks, not an interleaved split: neighbouring lines of a user's file are near-duplicates, and interleaving
    would leak them across splits.
    """
    n_test = max(round(n * test_frac), 1 if test_frac > 0 and n >= 3 else 0)
    n_valid = max(round(n * valid_frac), 1 if valid_frac > 0 and n >= 3 else 0)
    n_train = n - n_valid - n_test
    return [(0, n_train), (n_train, n_train + n_valid), (n_train + n_valid, n)]
