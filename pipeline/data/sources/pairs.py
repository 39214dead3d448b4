"""The in-memory path of ``prepare``: translation pairs (bible verses, plain text) loaded whole, shuffled with
``seed`` and tokenized, one pair per verse/line or consecutive verses joined into passages (``passages.py``).

The corpora that take it are small (the bible: 31k verses); parallel files and TSV stream (``prepare/plan.py``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from pipeline.data.sources.corpus import CorpusSource, load_splits
from pipeline.data.sources.passages import check_passage_len, join_passages, passage_lengths
from pipeline.data.text import SPLITS, Example, Record
from pipeline.data.tokenizer import TextTokenizer, train_tokenizer


def pair_records(source: CorpusSource, vocab_size: int, seed: int, limit: int | None, task: str,
                 passage_len: int | None) -> tuple[TextTokenizer, dict, dict, dict]:  # fmt: skip
    """Translation pairs (one per verse/line, or joined into passages): tokenizer, records and sizes per split."""
    splits = load_splits(source)
    if not splits["train"]:
        raise ValueError(f"corpus {source.spec} has no training pairs")
    ordered = list(splits["train"])
    random.Random(seed).shuffle(splits["train"])
    tokenizer = train_tokenizer((text for _, s, t in splits["train"][:limit] for text in (s, t)), vocab_size)
    extra: dict = {"task": task} if task != "translation" else {}
    if task == "passages":
        assert passage_len is not None
        extra["passage_len"] = passage_len
        for split in SPLITS:
            verses = ordered if split == "train" else splits[split]
            lengths = passage_lengths(tokenizer, verses)
            if split == "train":
                check_passage_len(verses, lengths, passage_len, source.spec)
            splits[split], dropped = join_passages(verses, lengths, passage_len)
            extra[f"{split}_stats"] = {"verses": len(verses), "verses_dropped_overlong": dropped}
        random.Random(seed).shuffle(splits["train"])
    records = {split: tokenized(tokenizer, splits[split]) for split in SPLITS}
    return tokenizer, records, {split: len(splits[split]) for split in SPLITS}, extra


def tokenized(tokenizer: TextTokenizer, examples: list[Example]) -> Iterator[list[Record]]:
    """Chunks of (key, src text, tgt text, src ids, tgt ids), encoded in batches (multi-threaded in Rust)."""
    for start in range(0, len(examples), 4096):
        chunk = examples[start : start + 4096]
        src_ids = tokenizer.encode_batch([s for _, s, _ in chunk])
        tgt_ids = tokenizer.encode_batch([t for _, _, t in chunk])
        yield [(k, s, t, a, b) for (k, s, t), a, b in zip(chunk, src_ids, tgt_ids, strict=True)]
