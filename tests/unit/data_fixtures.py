"""Tiny synthetic parallel corpus for the data tests (no binary data is committed; shards are made in tmp)."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = ["red", "blue", "green", "cat", "dog", "bird", "runs", "sleeps", "eats", "the", "a", "big", "small"]
FRENCH = {
    "red": "rouge", "blue": "bleu", "green": "vert", "cat": "chat", "dog": "chien", "bird": "oiseau",
    "runs": "court", "sleeps": "dort", "eats": "mange", "the": "le", "a": "un", "big": "grand", "small": "petit",
}  # fmt: skip


def write_parallel(root: Path, n: int = 200, seed: int = 0) -> tuple[Path, Path]:
    """``n`` line-aligned sentence pairs of varied length (2..24 words), with accents and one odd line."""
    rng = random.Random(seed)
    src_lines, tgt_lines = [], []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 24))]
        src_lines.append(" ".join(words) + f" {i}.")
        tgt_lines.append(" ".join(FRENCH[w] for w in words) + f" {i} été.")
    src_lines[3] = "literal <pad> and <eos> stay text \u00e9"
    src, tgt = root / "corpus.en", root / "corpus.fr"
    src.write_text("\n".join(src_lines) + "\n", encoding="utf-8")
    tgt.write_text("\n".join(tgt_lines) + "\n", encoding="utf-8")
    return src, tgt
