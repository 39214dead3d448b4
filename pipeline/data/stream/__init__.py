"""Reading prepared data at train time: the loader (``loader.py``), resuming on another slot count
(``reshard.py``), one shard read and checked (``shard_io.py``), a memory task's decoder-only batch
(``memory_batches.py``), and the start-of-run check of a prepared dir (``verify.py``).

May import: ``pipeline.data``'s leaves (``text``, ``manifest``, ``location``, ``tokenizer``, ``memory_spec``),
never ``prepare/`` or ``sources/`` (a training run reads shards; it never prepares them). A test checks this from
the source.
"""
