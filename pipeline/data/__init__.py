"""Data: text pairs -> joint BPE -> webdataset tar shards (``prepare/``) -> length-bucketed batches (``stream/``).

Layers, bottom up (a test checks that the loader reaches no preparation code and that there is no import circle):

- leaves: ``text.py`` (splits, cleaning, split blocks), ``manifest.py`` (the prepared dir's one description:
  format version, read, validate, write), ``location.py`` (local or remote data dirs), ``tokenizer.py``,
  ``memory_tasks.py`` (the MQAR and copy generators) and ``memory_spec.py`` (a memory task's spec and members);
- ``sources/``: the corpora and the tasks' records (bible, parallel files, TSV, text, passages, LM windows);
- ``prepare/``: plan -> encode ranges -> merge, the shard writer, the one ``pipeline data prepare`` parser, and
  the memory tasks' generated shards (``memory_shards.py``);
- ``stream/``: the loader, resharding, shard reads, the memory tasks' batches and the start-of-run verification
  (leaves only).

No model, Lightning, DeepSpeed or SLURM imports here. Names are loaded lazily so ``pipeline --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_loader": "pipeline.data.stream.loader",
    "ShardError": "pipeline.data.manifest",
    "verify_prepared": "pipeline.data.stream.verify",
    "ensure_prepared": "pipeline.data.prepare.build",
    "read_manifest": "pipeline.data.manifest",
    "add_prepare_arguments": "pipeline.data.prepare.command",
    "run_prepare": "pipeline.data.prepare.command",
    "TASKS": "pipeline.data.prepare.build",
    "load_tokenizer": "pipeline.data.tokenizer",
    "CorpusSource": "pipeline.data.sources.corpus",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
