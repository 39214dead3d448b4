"""Atomic file writes (temp file beside the target + `os.replace`) and JSON without NaN: the one writer every run
file, sweep file and report file goes through.

A reader, or a job preempted mid-write, sees the old file or the new one, never half of one. Files are created
with mode 0o666 masked by the process umask, like any other file the process writes (`tempfile.mkstemp` would make
them owner-only, unreadable to the rest of a group sharing a results directory).
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomic(
    path: str | Path, write: Callable[[IO[Any]], None], binary: bool = False, fsync: bool = False
) -> Path:
    """Write ``path`` through ``write(handle)`` into a temp file beside it, then rename it into place.

    `fsync`: flush the file and its directory to disk first (checkpoints: a crash must not leave a renamed but
    empty file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # O_EXCL: a fresh file of our own; 0o666: the kernel applies the umask, as for open(path, "w")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``path`` holds ``text`` (atomically, see `write_atomic`)."""
    return write_atomic(path, lambda f: f.write(text))


def write_bytes_atomic(path: str | Path, data: bytes, fsync: bool = False) -> Path:
    """``path`` holds ``data`` (atomically, see `write_atomic`)."""
    return write_atomic(path, lambda f: f.write(data), binary=True, fsync=fsync)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def read_json(path: str | Path) -> Any:
    """A JSON file's content; a file that is not UTF-8 JSON raises one ValueError naming it (a binary or truncated
    run file would otherwise surface as a codec or parser message without the path)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
