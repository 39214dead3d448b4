"""Part files of a streamed preparation: the tokenized records one input range wrote for one bucket or split.

A part is four ``.npy`` arrays in one file (``np.save`` back to back): the UTF-8 bytes of every record's key,
source and target text, their offsets, the token ids of both sides, and their offsets. Writing and reading a
chunk is a handful of array operations instead of one ``pickle.dump`` per record (the earlier bucket files), and
``np.load(allow_pickle=False)`` reads nothing but numbers.

Why not webdataset tars or Arrow: the parts are short-lived scratch, read back whole by one process, and the
numpy layout is the cheapest to build from ``encode_batch``'s lists; no library does exactly this.
"""

from __future__ import annotations

from array import array
from pathlib import Path

import numpy as np

from pipeline.data.text import Record


class PartBuffer:
    """Records appended in order, saved as one part file with ``save``.

    Token ids are kept as packed int32 bytes (``array``), not lists of Python ints: ~170 bytes a side instead of
    ~1.3 kB, so a range task can buffer its ``SEGMENT_PAIRS`` in well under 100 MB.
    """

    def __init__(self) -> None:
        self.texts: list[str] = []  # key, src, tgt, key, src, tgt, ...
        self.ids: list[bytes] = []  # src ids, tgt ids, ... (native int32)

    def __len__(self) -> int:
        return len(self.ids) // 2

    def add(self, key: str, src: str, tgt: str, src_ids: list[int], tgt_ids: list[int]) -> None:
        self.texts += (key, src, tgt)
        self.ids += (array("i", src_ids).tobytes(), array("i", tgt_ids).tobytes())

    def save(self, path: Path) -> None:
        encoded = [t.encode("utf-8") for t in self.texts]
        text_off = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=text_off[1:])
        id_off = np.zeros(len(self.ids) + 1, dtype=np.int64)
        np.cumsum([len(i) // 4 for i in self.ids], out=id_off[1:])
        ids = np.frombuffer(b"".join(self.ids), dtype=np.intc).astype("<i4", copy=False)
        with path.open("wb") as f:
            for values in (np.frombuffer(b"".join(encoded), dtype=np.uint8), text_off, ids, id_off):
                np.save(f, values, allow_pickle=False)
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
