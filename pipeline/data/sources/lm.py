"""Language-modelling data (``data.task: lm``): contiguous windows of ``context`` tokens from long documents.

Documents. From the embedded corpus, ``bible:4+k+3`` (any public-domain codes joined by ``+``): each translation's
book is one document, and the same books are held out in every translation (``bible.py``). From a user's text
(``text:FILE``, a file or a directory of files, gzip/xz allowed): its non-empty lines are cut into contiguous
train / valid / test blocks (by ``valid_frac`` / ``test_frac``, never interleaved) and each block is one document,
so the held-out windows are one cluster. From a directory of documents (``docs:DIR``, one file each, e.g. PG-19's
books): whole documents are held out (``documents.py``), each one a cluster.

Windows. Each split's documents are tokenized and concatenated, each followed by EOS, and cut into disjoint
windows of ``context + 1`` tokens (stride ``context + 1``): every token is a target exactly once. A sample stores
the window as ``tgt.i32`` with an empty ``src.i32``; the loader feeds BOS first, ``tgt_in = [BOS] + window[:-1]``,
``tgt_out = window`` (``stream/loader.py``), so the first token is predicted from BOS alone and the last from BOS
and ``context`` tokens: every architecture starts each window from the same state it always sees at position 0
(without BOS, position 0 is predicted from one arbitrary token). The tail shorter than a window is dropped
(counted in the manifest). Per valid/test window the manifest names its document, book and chapter
(``lm_clusters.py``): the clusters a bootstrap resamples whole.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pipeline.data.sources.bible import DEFAULT_LM_CORPUS, Document, bible_documents, parse_bible_lm_spec
from pipeline.data.sources.corpus import CorpusSource
from pipeline.data.sources.documents import load_document_splits
from pipeline.data.sources.lm_clusters import token_labels, window_clusters
from pipeline.data.sources.readers import Malformed, clean_lines, expand
from pipeline.data.text import SPLITS, Record, block_bounds
from pipeline.data.tokenizer import EOS_ID, TextTokenizer


def load_documents(source: CorpusSource, malformed: Malformed | None = None) -> dict[str, list[Document]]:
    """Split -> documents, in corpus order (see the module docstring).

    ``text:`` may be a file or a directory of files (sorted by name, read as one text), gzip/xz allowed; lines that
    are not UTF-8 are counted in ``malformed`` with file and line (``readers.py``).
    """
    if source.bible is not None and "-" in source.bible:
        raise ValueError(
            f"data.task=lm reads monolingual text, not the translation pair {source.bible}: use "
            f"--corpus {DEFAULT_LM_CORPUS} (codes joined by '+') or --text FILE"
        )
    if source.bible is not None:
        return bible_documents(parse_bible_lm_spec(source.bible))
    if source.docs is not None:
        return load_document_splits(source.docs, source.valid_frac, source.test_frac,
                                    malformed if malformed is not None else Malformed())  # fmt: skip
    if source.text is not None:
        malformed = malformed if malformed is not None else Malformed()
        lines = list(clean_lines(expand(source.text), malformed))
        bounds = block_bounds(len(lines), source.valid_frac, source.test_frac)
        return {
            name: [(f"{name}block", "\n".join(lines[a:b]))] if b > a else []
            for name, (a, b) in zip(SPLITS, bounds, strict=True)
        }
    raise ValueError(
        f"data.task=lm reads monolingual text, not the parallel corpus {source.spec}: use "
        f"--corpus {DEFAULT_LM_CORPUS}, --text FILE or --docs DIR"
    )


def token_stream(encoded: list[list[int]]) -> np.ndarray:
    """All documents' tokens (``tokenizer.encode_batch`` of their texts), each followed by EOS, as one int32 array."""
    parts: list[np.ndarray] = []
    for ids in encoded:
        parts.append(np.asarray([*ids, EOS_ID], dtype="<i4"))
    return np.concatenate(parts) if parts else np.zeros(0, dtype="<i4")


def n_windows(n_tokens: int, context: int) -> int:
    """Disjoint windows of ``context + 1`` tokens that fit in ``n_tokens``."""
    return max(0, n_tokens // (context + 1))


def check_context(context: int, n_tokens: int, split: str, corpus: str) -> None:
    if context < 1:
        raise ValueError(f"data.context must be >= 1, got {context}")
    if n_tokens <= context:
        raise ValueError(
            f"data.context={context} cannot be filled by the {split} split of {corpus}: it has only {n_tokens} "
            f"tokens (one window needs {context + 1}); use a smaller data.context or more text"
        )


def lm_records(
    source: CorpusSource, vocab_size: int, context: int, seed: int
) -> tuple[TextTokenizer, dict, dict, dict]:
    """Tokenizer (trained on the train documents), window records, window counts and manifest extras per split.

    The train windows are shuffled with ``seed`` before sharding (as translation pairs are), so every shard mixes
    books and translations; valid/test keep corpus order.
    """
    import random

    from pipeline.data.tokenizer import train_tokenizer

    malformed = Malformed()
    docs = load_documents(source, malformed)
    if not docs["train"]:
        raise ValueError(f"corpus {source.spec} has no training text")
    tokenizer = train_tokenizer((text for _, text in docs["train"]), vocab_size)
    records, sizes = {}, {}
    extra: dict = {"task": "lm", "context": context, "malformed": malformed.to_manifest()}
    newline = tokenizer.encode("\n")
    extra["windows"] = {}
    for split in SPLITS:
        encoded = tokenizer.encode_batch([text for _, text in docs[split]])
        stream = token_stream(encoded)
        check_context(context, len(stream), split, source.spec)
        order = list(range(n_windows(len(stream), context)))
        if split == "train":
            random.Random(seed).shuffle(order)
        sizes[split] = len(order)
        records[split] = _window_chunks(stream, context, order)
        extra[f"{split}_stats"] = {
            "documents": len(docs[split]),
            "stream_tokens": int(len(stream)),
            "dropped_tail_tokens": int(len(stream) - len(order) * (context + 1)),
        }
        if split != "train":  # the held-out windows are scored and bootstrapped; corpus order = key order
            labels = token_labels(
                [n for n, _ in docs[split]], encoded, newline[0] if len(newline) == 1 else None
            )
            extra["windows"][split] = window_clusters(labels, context + 1, len(order))
    return tokenizer, records, sizes, extra


def _window_chunks(stream: np.ndarray, context: int, order: list[int]) -> Iterator[list[Record]]:
    for start in range(0, len(order), 4096):
        yield [
            (f"w{i:08d}", "", "", stream[:0], stream[i * (context + 1) : (i + 1) * (context + 1)])
            for i in order[start : start + 4096]
        ]
