"""Preparation: a corpus (``sources/``) -> BPE tokenizer -> webdataset tar shards + ``manifest.json``, offline.

The one entry point is ``build.prepare`` (and ``build.ensure_prepared`` for a run's ``data.dir``); the one
argument parser is ``command.py``'s (``pipeline data prepare``; ``pipeline/slurm/data_prepare.py`` adds only its
``--slurm`` submission on top).

Two paths, the same files:

- in memory (the bible, plain text, ``data.task`` passages and lm): ``sources/`` give every split's records,
  ``output.write_prepared`` shards them (``shard_writer.py``, ``fast_tar.py``); the memory tasks (``data.task``
  mqar and copy) are generated from their spec instead, by ``memory_shards.py``;
- streamed (parallel files and TSV, in bounded memory), in three phases so that the middle one can run in many
  processes or SLURM array tasks: *plan* (``plan.py``: one counting pass, BPE on a bounded sample) -> *encode
  ranges* (``encode.py``: each contiguous input range tokenized into its own part files, ``range_parts.py``) ->
  *merge* (``merge.py``: the parts into shards, rendered in workers by ``merge_split.py``). Locally phase 2 runs
  in ``workers`` processes; ``--slurm`` runs the phases as jobs (``staged.py``). The shards are byte-identical
  either way, whatever the number of workers or ranges.

Cost and ceiling of the streamed path (CPU time per pair, one thread, ``python -m benchmarks.prepare_profile
--pairs 50000``, measured on a shared 2-core machine): ``encode_batch`` 170-255 us, reading + cleaning 21-29 us,
part files 9-14 us, the merge's rendering 39 us (in workers, ``merge_split.py``) and appending 16.5 us (serial).
Encoding dominates, so throughput is bounded by cores / encode cost: ~10k pairs/s on 2 cores (4-5x the in-memory
path's 2,000-2,400 pairs/s), less the serial plan pass and merge appending (~40 us per pair). More cores
(``workers``, SLURM ranges) are the only way past it.

May import: ``pipeline.data``'s leaves (``text``, ``manifest``, ``location``, ``tokenizer``, ``memory_tasks``,
``memory_spec``), ``sources/``, and ``stream.verify`` (an existing dir is checked before it is reused). Nothing
here is imported by ``stream/``.
"""
