"""A loader worker's error, told the user as the same one line an in-process read gives.

With ``data.num_workers > 0`` an exception raised in a worker process reaches the main process re-created by
torch (``ExceptionWrapper.reraise``): same type, but its message is "Caught ShardError in DataLoader worker
process 0." followed by the worker's whole traceback. The CLI prints a user error's message as one
``pipeline COMMAND: error:`` line, so the original message is recovered here from the traceback's last lines.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.data.manifest import ShardError

_WRAPPED = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")
_DATA_CODE = str(Path(__file__).resolve().parents[1])  # pipeline/data: its ValueError/OSError are bad input


def unwrapped(err: BaseException) -> BaseException | None:
    """A ShardError carrying the worker's original message, or None when `err` is not a wrapped input error (a
    bug in a worker keeps torch's message with the worker's traceback)."""
    message = str(err)
    if not isinstance(err, ShardError | ValueError | OSError) or not _WRAPPED.match(message):
        return None
    lines = message.splitlines()
    frames = [line for line in lines if line.lstrip().startswith('File "')]
    from_data = bool(frames) and _DATA_CODE in frames[-1]
    if not isinstance(err, ShardError) and not from_data:
        return None
    name = type(err).__name__
    starts = [i for i, line in enumerate(lines) if re.match(rf"^(?:[\w.]+\.)?{name}: ", line)]
    if not starts:
        return None
    original = "\n".join(lines[starts[-1] :]).split(": ", 1)[1]
    return ShardError(original)
