"""Progress lines for long bootstrap work: one line to stderr at most every ``every_s`` seconds (and at the end),
with the rate and the time left, so a 20-minute fit on a busy machine is not silent until it finishes. Plain lines
rather than a live bar because the fit mostly runs in batch jobs and logs, where a bar leaves only noise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressLines:
    def __init__(self, total: int, label: str, every_s: float = 10.0, stream: TextIO | None = None) -> None:
        self.total, self.label, self.every_s = max(total, 1), label, every_s
        self.stream = sys.stderr if stream is None else stream
        self.done, self.stage, self.last_printed = 0, "", -1
        self.start = self.last = time.monotonic()

    def set_stage(self, stage: str) -> None:
        self.stage = stage

    def skip(self, n: int) -> None:
        """Work that will not be done (a fit that draws no resamples): the total shrinks instead of the count
        ticking, so the count and the time left stay true."""
        self.total = max(self.total - max(n, 0), self.done, 1)

    def finish(self) -> None:
        """The closing line at 100 %, also when fits that were underdetermined skipped their resamples."""
        if self.done < self.total:
            self.done = self.total - 1
            self.tick()
        elif self.last_printed != self.done:
            self._print(time.monotonic())

    def tick(self) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done >= self.total:
            self._print(now)

    def _print(self, now: float) -> None:
        self.last, self.last_printed = now, self.done
        elapsed = now - self.start
        left = elapsed / self.done * (self.total - self.done)
        print(
            f"{self.label}: {self.done}/{self.total} resamples ({100 * self.done / self.total:.0f} %), "
            f"{elapsed:.0f} s elapsed, ~{left:.0f} s left [{self.stage}]",
            file=self.stream,
            flush=True,
        )
