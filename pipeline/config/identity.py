"""Which config keys make a checkpoint belong to a run: a resumed run must match them, and `--resume auto` refuses a
checkpoint whose config hash differs, naming the keys (training/checkpoint_files.py). It reads the config as a plain dict (a checkpoint's
saved one or `to_dict` of the current run), so it needs nothing else of the package."""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Keys whose change alters the model or the data stream: a resumed run must keep them, or one run
# directory would hold two different experiments.
IDENTITY_KEYS = (
    "model",
    "seed",
    "data.dir",
    "data.vocab_size",
    "data.max_len",
    "data.corpus",
    "data.limit",
    "data.task",
    "data.context",
    "data.passage_len",
    "data.mqar",
    "data.copy",
    "data.memory",
)
# Keys added after runs were saved without them: each enters the identity only where its task uses it, so the hash
# of every translation run (and so its resume) is what it was before the keys existed.
TASK_KEYS = {
    "data.task": ("passages", "lm", "mqar", "copy"),
    "data.context": ("lm",),
    "data.passage_len": ("passages",),
    "data.mqar": ("mqar",),
    "data.copy": ("copy",),
    "data.memory": ("mqar", "copy"),
}
SECTIONS_KEPT_WHOLE = ("model", "mqar", "copy", "memory")  # compared as one value each


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key_, value in values.items():
        if isinstance(value, dict) and key_ not in SECTIONS_KEPT_WHOLE:
            out.update(flatten(value, f"{prefix}{key_}."))
        else:
            out[f"{prefix}{key_}"] = value
    return out


def identity_of(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """The keys that must not change between a checkpoint and the run that resumes it."""
    flat = flatten(cfg_dict)
    out = {name: flat.get(name) for name in IDENTITY_KEYS}
    task = flat.get("data.task") or "translation"
    for name, tasks in TASK_KEYS.items():
        if task not in tasks:
            del out[name]
    return out


def config_hash(cfg_dict: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(identity_of(cfg_dict), sort_keys=True, default=str).encode()
    ).hexdigest()[:16]


def identity_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences on identity keys, e.g. ["model: {'d_model': 64} -> {'d_model': 128}"]."""
    a, b = identity_of(saved), identity_of(current)
    return [
        f"{name}: {a.get(name)!r} -> {b.get(name)!r}" for name in IDENTITY_KEYS if a.get(name) != b.get(name)
    ]
