"""The compute frontier: the lower envelope of loss against compute, Kaplan et al.'s L(C_min). One rule, used by
the L(C) fits (every validation point of every run), the time axis (runs against device-seconds) and the figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def compute_frontier(compute: Any, loss: Any) -> np.ndarray:
    """Indices of the points on the lower envelope of loss vs compute: sorted by compute (ties: the lower loss
    first), each kept point has a lower loss than every point with less or equal compute."""
    compute, loss = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    keep, best = [], math.inf
    for i in np.lexsort((loss, compute)):
        if loss[i] < best:
            keep.append(int(i))
            best = loss[i]
    return np.array(keep, dtype=int)


@dataclass(frozen=True)
class FrontierPoint:
    run: str  # the point's first run (seeds averaged)
    tokens: float
    compute: float
    loss: float

    @property
    def final_valid_loss(self) -> float:
        """The loss at this point, under the name plots written for run records read."""
        return self.loss


def frontier(curves: Sequence[tuple[str, float, list[tuple[float, float]]]]) -> list[FrontierPoint]:
    """The frontier over every point of every (run, flops per token, [(tokens, loss)]) curve, by compute."""
    pts = [FrontierPoint(run, t, fpt * t, loss) for run, fpt, c in curves for t, loss in c]
    return [pts[i] for i in compute_frontier([p.compute for p in pts], [p.loss for p in pts])]
