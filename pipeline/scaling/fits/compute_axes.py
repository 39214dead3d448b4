"""Training compute counted three ways, and each run's (tokens, loss) curve over its validation points.

- ``model``: the model's own FLOPs per target token (``RunRecord.flops_per_token``, docs/flops.md), what each
  architecture really costs, the recurrence and attention included.
- ``no_output``: the same without the output projection [d] -> [V] (6 d V per target token in training), which
  is 25-93 % of the total for the study's small models and would otherwise dominate the compute axis.
- ``6N``: Kaplan et al.'s (2020) C = 6 N per token with N the non-embedding parameters, so the exponents can be
  held against published ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.scaling.records.run_record import RunRecord

COMPUTE_AXES = {
    "model": "the model's own training FLOPs",
    "no_output": "training FLOPs without the output projection (- 6 d V per token)",
    "6N": "6 N per token, N = non-embedding parameters (Kaplan et al. 2020)",
}


def output_projection_flops(r: RunRecord) -> float | None:
    """6 d_model V per target token: the [d] -> [V] matmul, forward + backward (docs/flops.md), from the config."""
    model, data = r.config.get("model", {}), r.config.get("data", {})
    d, v = model.get("d_model"), data.get("vocab_size")
    if not isinstance(d, int) or not isinstance(v, int) or d <= 0 or v <= 0:
        return None
    return 6.0 * d * v


def flops_per_token(r: RunRecord, axis: str) -> float | None:
    """Training FLOPs per target token on ``axis``; None where the record cannot say (old record, no config)."""
    if axis == "model":
        return r.flops_per_token
    if axis == "6N":
        return 6.0 * r.non_embedding_params
    if axis == "no_output":
        if r.flops_per_token_no_output is not None:
            return r.flops_per_token_no_output
        out = output_projection_flops(r)
        return r.flops_per_token - out if out is not None and r.flops_per_token > out else None
    raise ValueError(f"unknown compute axis {axis!r}; expected one of {sorted(COMPUTE_AXES)}")


def curve(r: RunRecord) -> list[tuple[float, float]]:
    """(tokens, loss) at every validation point of the run, ending with its final loss at ``r.tokens``; a record
    without ``valid_curve`` (written before it existed) gives its final point only."""
    points = [(float(p["tokens"]), float(p["loss"])) for p in r.valid_curve if p["tokens"] > 0]
    points = [p for p in points if p[0] < r.tokens]
    return [*points, (float(r.tokens), r.final_valid_loss)]


def mean_curve(runs: Sequence[RunRecord]) -> list[tuple[float, float]]:
    """Seeds of one point averaged index by index (same schedule, same validation steps), cut to the shortest."""
    curves = [curve(r) for r in runs]
    t = min(len(c) for c in curves)
    if t == 1 or any(len(c) != t for c in curves):
        curves = [c[-t:] for c in curves]  # the final points stay aligned
    return [
        (float(np.mean([c[i][0] for c in curves])), float(np.mean([c[i][1] for c in curves])))
        for i in range(t)
    ]
