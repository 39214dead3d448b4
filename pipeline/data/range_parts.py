"""Part files of a streamed preparation: the tokenized records one input range wrote for one bucket or split.

A part is four ``.npy`` arrays in one file (``np.save`` back to back): the UTF-8 bytes of every record's key,
source and target text, their offsets, the token ids of both sides, and their offsets. Writing and reading a
chunk is a handful of array operations instead of one ``pickle.dump`` per record (the earlier bucket files), and
``np.load(allow_pickle=False)`` reads nothing but numbers.

Why not webdataset tars or Arrow: the parts are short-lived scratch, read back whole by one process, and the
numpy layout is the cheapest to build from ``encode_batch``'s lists; no library does exactly this.
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path

import numpy as np

from pipeline.data.shard_writer import Record


class PartBuffer:
    """Records appended in order, saved as one part file with ``save``."""

    def __init__(self) -> None:
        self.texts: list[str] = []  # key, src, tgt, key, src, tgt, ...
        self.ids: list[list[int]] = []  # src ids, tgt ids, ...

    def __len__(self) -> int:
        return len(self.ids) // 2

    def add(self, key: str, src: str, tgt: str, src_ids: list[int], tgt_ids: list[int]) -> None:
        self.texts += (key, src, tgt)
        self.ids += (src_ids, tgt_ids)

    def save(self, path: Path) -> None:
        encoded = [t.encode("utf-8") for t in self.texts]
        text_off = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=text_off[1:])
        id_off = np.zeros(len(self.ids) + 1, dtype=np.int64)
        np.cumsum([len(i) for i in self.ids], out=id_off[1:])
        ids = np.fromiter(chain.from_iterable(self.ids), dtype="<i4", count=int(id_off[-1]))
        with path.open("wb") as f:
            for array in (np.frombuffer(b"".join(encoded), dtype=np.uint8), text_off, ids, id_off):
                np.save(f, array, allow_pickle=False)
        self.texts, self.ids = [], []


def load_part(path: Path) -> list[Record]:
    """The records of one part file, in the order they were added."""
    with path.open("rb") as f:
        blob, text_off, ids, id_off = (np.load(f, allow_pickle=False) for _ in range(4))
    data = blob.tobytes()
    t = text_off.tolist()
    o = id_off.tolist()
    return [
        (data[t[3 * r] : t[3 * r + 1]].decode(), data[t[3 * r + 1] : t[3 * r + 2]].decode(),
         data[t[3 * r + 2] : t[3 * r + 3]].decode(), ids[o[2 * r] : o[2 * r + 1]], ids[o[2 * r + 1] : o[2 * r + 2]])
        for r in range(len(o) // 2)
    ]  # fmt: skip
