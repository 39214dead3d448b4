"""`pipeline train` whose training stream stalls: the real loader yields `STALL_AFTER` batches, then never another.

Usage: python stalling_train.py MODE MARKER [pipeline train arguments...]. MODE `block` waits forever (a loader
worker or a file system that never answers), `spin` loops at 100 % CPU (what an empty split once did). The
file MARKER is created once the stream has stalled, so a test knows when to send its signal.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pipeline.training.datamodule as datamodule
from pipeline.cli import main

STALL_AFTER = (
    5  # batches: Lightning fetches one ahead, so 4 steps train and the 2- and 4-step checkpoints exist
)


def stalling_iter(mode: str, marker: Path):
    real_iter = datamodule.TrainStream.__iter__

    def __iter__(self):
        for count, batch in enumerate(real_iter(self)):
            if count == STALL_AFTER:
                break
            yield batch
        marker.touch()
        if mode == "block":
            threading.Event().wait()
        while True:  # spin
            pass

    return __iter__


if __name__ == "__main__":
    mode, marker, *argv = sys.argv[1:]
    datamodule.TrainStream.__iter__ = stalling_iter(mode, Path(marker))
    sys.exit(main(["train", *argv]))
