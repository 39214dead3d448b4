"""Atomic file writes (temp file + rename) and JSON without NaN: every file `pipeline.scaling` writes goes here."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomic(path: str | Path, write: Callable[[IO[Any]], None], binary: bool = False) -> Path:
    """Write ``path`` through ``write(handle)`` into a temp file beside it, then rename: a reader (or a preempted
    job) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def json_safe(data: Any) -> Any:
    """`data` with every NaN or infinite float as None: JSON has no NaN (an undetermined value is null)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [json_safe(v) for v in data]
    return data


def save_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON atomically (``write_atomic``); NaN and infinities are written as null."""
    data = json_safe(data)

    def dump(f: IO[str]) -> None:
        json.dump(data, f, indent=2, allow_nan=False)
        f.write("\n")

    return write_atomic(path, dump)
