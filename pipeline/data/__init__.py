"""Data: text pairs -> joint BPE -> webdataset tar shards (``prepare``) -> length-bucketed batches (``loader``).

No model, Lightning or DeepSpeed imports here. Names are loaded lazily so ``pipeline --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_loader": "pipeline.data.loader",
    "ShardError": "pipeline.data.verify",
    "verify_prepared": "pipeline.data.verify",
    "prepare": "pipeline.data.prepare",
    "ensure_prepared": "pipeline.data.prepare",
    "read_manifest": "pipeline.data.prepare",
    "add_prepare_arguments": "pipeline.data.prepare",
    "run_prepare": "pipeline.data.prepare",
    "TASKS": "pipeline.data.prepare",
    "load_tokenizer": "pipeline.data.tokenizer",
    "CorpusSource": "pipeline.data.corpus",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
