"""Learning-rate schedules as pure functions of the step (nanoGPT style): easy to test and to plot."""

from __future__ import annotations

import math

from pipeline.config import OptimConfig


def lr_multiplier(step: int, optim: OptimConfig, max_steps: int) -> float:
    """Factor applied to `optim.lr` at optimiser step `step` (0-based).

    - cosine: linear warmup to 1, then cosine decay to `min_lr_ratio` at `max_steps`.
    - constant: linear warmup, then 1.
    - halving: 1 until `halve_after`, then halved every `halve_every` steps (Sutskever et al. 2014).
    """
    if optim.schedule == "halving":
        if optim.halve_every <= 0 or step < optim.halve_after:
            return 1.0
        return 0.5 ** (1 + (step - optim.halve_after) // optim.halve_every)
    if optim.warmup_steps > 0 and step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.schedule == "constant":
        return 1.0
    span = max(1, max_steps - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
