"""Which document, book and chapter each LM window comes from: the cluster ids of a cluster bootstrap.

LM windows are cut from a split's concatenated token stream, so a window of one held-out book is not independent
of the book's other windows, and, in a corpus of several translations (``bible:4+k+3``), not of the same book's
windows in the other translations either. A bootstrap must resample such windows together. Per window of the
valid and test splits the manifest records (``manifest["windows"][split]``, windows in key order ``w00000000``..):

- ``document``: the document holding most of the window's tokens (``t4b08``: WEB's Ruth; ``validblock`` for text);
- ``book``: that document's book across translations (``b08``), the unit that puts all translations together;
- ``chapter``: the chapter (ordinal within the book) holding most of the window's tokens, across translations
  (``b08c002``): the finer unit, and the default (``DEFAULT_UNIT``), because with 4 held-out books a test over
  books cannot reject at 0.05 (analyses/k_star.py); chapters of one book stay correlated, which the unit's name says.

Chapters: the bible documents join their chapters with a newline, which the byte-level tokenizer always keeps as
one token of its own (``EOS`` and ``\\n`` are both boundaries), so the chapter of a token is the count of newline
tokens before it in its document. A text corpus (``text:FILE``) has no books: every unit is its document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

UNITS = ("chapter", "book", "document")
DEFAULT_UNIT = "chapter"
_BIBLE_DOC = re.compile(r"t\w+b(\d\d)")


def token_labels(doc_names: Sequence[str], doc_tokens: Sequence[np.ndarray], newline_id: int | None) -> dict:
    """Per token of the concatenated stream (each document's tokens + EOS): its document, book and chapter."""
    docs, books, chapters = [], [], []
    for name, ids in zip(doc_names, doc_tokens, strict=True):
        n = len(ids) + 1  # + EOS
        match = _BIBLE_DOC.fullmatch(name)
        book = f"b{match.group(1)}" if match else name
        if match and newline_id is not None:
            ordinal = np.concatenate([[0], np.cumsum(np.asarray(ids) == newline_id)]) + 1  # chapter 1..
            chapter = [f"{book}c{c:03d}" for c in ordinal[:n]]
        else:
            chapter = [book] * n
        docs += [name] * n
        books += [book] * n
        chapters += chapter
    return {"document": np.asarray(docs), "book": np.asarray(books), "chapter": np.asarray(chapters)}


def _mode(labels: np.ndarray) -> str:
    values, counts = np.unique(labels, return_counts=True)
    return str(values[int(np.argmax(counts))])


def window_clusters(labels: dict, width: int, n_windows: int) -> dict:
    """Per window (``width`` tokens at stride ``width``, in stream order): the majority label of each unit."""
    return {
        unit: [_mode(labels[unit][i * width : (i + 1) * width]) for i in range(n_windows)] for unit in UNITS
    }


def read_window_clusters(manifest: dict, split: str, unit: str = DEFAULT_UNIT) -> list[str]:
    """Cluster id per window of ``split`` (windows in key order) from a prepared LM manifest; one clear error if
    the data were prepared without them."""
    if unit not in UNITS:
        raise ValueError(f"cluster unit {unit!r}: must be one of {', '.join(UNITS)}")
    try:  # ``limit`` writes the first windows of a held-out split only
        return list(manifest["windows"][split][unit])[: int(manifest["splits"][split]["samples"])]
    except KeyError:
        raise ValueError(
            f"the manifest of corpus {manifest.get('corpus')} has no window clusters for split {split!r} "
            "(LM data of format_version >= 3 have them): rebuild it with `pipeline data prepare --force`"
        ) from None
