"""Sources: where the text comes from and how each task turns it into records, before any shard is written.

``bible.py`` (the embedded corpus: specs, held-out books), ``readers.py`` (parallel files, TSV, gzip/xz,
directories, streamed line by line), ``corpus.py`` (``CorpusSource``: one description of what to read, split into
train / valid / test), and the tasks' records: ``pairs.py`` (one pair per verse or line), ``passages.py``
(consecutive verses joined), ``lm.py`` (windows of a token stream).

May import: ``pipeline.data``'s leaves (``text``, ``manifest``, ``tokenizer``). Used by ``prepare/`` only.
"""
