"""Passage translation (``data.task: passages``): consecutive verses of one chapter joined into long aligned pairs.

Verse-aligned pairs are short (mean ~37 target tokens), so nothing has to travel far through a recurrence. Joining
consecutive verses of the same chapter gives aligned source/target passages up to ``passage_len`` tokens a side,
still aligned because both sides join the same verses. Passages never cross a chapter (or, for user files, a split
block), and the split is the verses' split, so whole books stay held out.

Lengths are exact without re-encoding every candidate: with the byte-level pre-tokenizer, ``encode(a + " " + b)``
is ``encode(a) + encode(" " + b)`` for stripped, non-empty ``a`` and ``b`` (every pre-token pattern takes the
leading space with it), so a passage's length is the first verse's length plus its followers' space-prefixed ones.
"""

from __future__ import annotations

from pipeline.data.text import Example
from pipeline.data.tokenizer import TextTokenizer


def group_of(key: str) -> str:
    """The unit a passage may not cross: a bible chapter (``bBBcCCC``), else one block per split."""
    return key[:7] if key.startswith("b") and len(key) == 11 else ""


Lengths = tuple[list[int], list[int], list[int], list[int]]  # src alone, src after, tgt alone, tgt after


def passage_lengths(tokenizer: TextTokenizer, examples: list[Example]) -> Lengths:
    """Per example and side: tokens as a passage's first verse, and as a following verse (space-prefixed)."""
    out = []
    for side in (1, 2):
        texts = [ex[side] for ex in examples]
        out.append([len(ids) for ids in tokenizer.encode_batch(texts)])
        out.append([len(ids) for ids in tokenizer.encode_batch([" " + t for t in texts])])
    return out[0], out[1], out[2], out[3]


def longest_group(examples: list[Example], lengths: Lengths) -> tuple[int, str]:
    """(tokens of the longer side of the longest chapter, its key): the most a passage could ever hold."""
    totals: dict[str, list[int]] = {}
    for i, (key, _, _) in enumerate(examples):
        g = group_of(key)
        if g in totals:
            totals[g][0] += lengths[1][i]
            totals[g][1] += lengths[3][i]
        else:
            totals[g] = [lengths[0][i], lengths[2][i]]
    group = max(totals, key=lambda g: max(totals[g]))
    return max(totals[group]), group


def join_passages(examples: list[Example], lengths: Lengths, passage_len: int) -> tuple[list[Example], int]:
    """Greedily join consecutive examples of one group while both sides stay <= ``passage_len`` tokens.

    Returns (passages, verses dropped because alone they exceed ``passage_len``). ``examples`` must be in
    corpus order. A passage's key is ``<first key>-<last key>`` (no dots, ``book_of`` still works).
    """
    src_alone, src_after, tgt_alone, tgt_after = lengths
    passages: list[Example] = []
    dropped = 0
    current: list[int] = []  # indices into examples
    size = (0, 0)

    def flush() -> None:
        if current:
            first, last = examples[current[0]][0], examples[current[-1]][0]
            key = first if len(current) == 1 else f"{first}-{last}"
            src = " ".join(examples[i][1] for i in current)
            passages.append((key, src, " ".join(examples[i][2] for i in current)))
            current.clear()

    for i, (key, _, _) in enumerate(examples):
        if max(src_alone[i], tgt_alone[i]) > passage_len:
            flush()
            dropped += 1
            continue
        same_group = current and group_of(examples[current[-1]][0]) == group_of(key)
        grown = (size[0] + src_after[i], size[1] + tgt_after[i])
        if same_group and max(grown) <= passage_len:
            current.append(i)
            size = grown
        else:
            flush()
            current.append(i)
            size = (src_alone[i], tgt_alone[i])
    flush()
    return passages, dropped


def check_passage_len(examples: list[Example], lengths: Lengths, passage_len: int, corpus: str) -> None:
    """A passage length longer than every chapter cannot be filled: one clear line saying the most it can be."""
    if passage_len < 1:
        raise ValueError(f"data.passage_len must be >= 1, got {passage_len}")
    longest, group = longest_group(examples, lengths)
    if passage_len > longest:
        where = f"chapter {group}" if group else "block"
        raise ValueError(
            f"data.passage_len={passage_len} cannot be filled by {corpus}: its longest train {where} has "
            f"{longest} tokens on its longer side; use data.passage_len <= {longest}"
        )
