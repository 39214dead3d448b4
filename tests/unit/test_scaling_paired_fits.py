"""Paired L(C) comparison: matched runs resampled with the same draws on both sides."""

import numpy as np
import pytest

from pipeline.scaling.fits.bootstrap import bootstrap_groups
from pipeline.scaling.fits.compute_law import lc_fit_points
from pipeline.scaling.fits.crossing import compare_curves
from pipeline.scaling.fits.intervals import fit_rng
from pipeline.scaling.fits.paired_crossing import match_points, paired_compare
from pipeline.scaling.fits.points import group_points
from pipeline.scaling.records.run_record import RunRecord


def runs(arch: str, offset: float, noise: np.ndarray) -> list[RunRecord]:
    """4 shapes x 3 budgets; both architectures get the same per-run noise (same batches), arch b is 2 % worse."""
    out, k = [], 0
    for d in (16, 32, 64, 128):
        n = 12 * d * d
        for tokens in (10_000, 30_000, 100_000):
            loss = (1.0 + (1e6 / n) ** 0.2 + (1e4 / tokens) ** 0.3) * offset * np.exp(noise[k])
            k += 1
            cfg = {"model": {"d_model": d, "n_layers": 2}, "optim": {"lr": 1e-3}}
            out.append(RunRecord(f"{arch}-d{d}-{tokens}", arch, 2 * n, n, 6.0 * n, tokens, 6.0 * n * tokens, 0.5,
                                 loss, loss, [loss], 1.0, cfg))  # fmt: skip
    return out


def test_paired_design_cancels_shared_noise_and_says_so():
    noise = np.random.default_rng(0).normal(0, 0.03, 12)
    a, b = runs("lstm", 1.0, noise), runs("transformer", 1.02, noise)
    matched = match_points(group_points(a), group_points(b))
    assert len(matched) == 12 and all(ra[0].tokens == rb[0].tokens for ra, rb in matched)
    at, rng = 6.0 * 12 * 128 * 128 * 100_000, (1e8, 1e14)
    paired = paired_compare("lstm", "transformer", matched, lc_fit_points, at, rng, 60, fit_rng(0, "p"))
    assert paired.design == "paired over 12 matched points"
    assert paired.loss_ratio == pytest.approx(1 / 1.02, rel=1e-6)
    fa, fb = (  # what report.fit_arch does for L_C: each side from its own stream
        bootstrap_groups(lambda draw, rs=rs: lc_fit_points([[rs[i] for i in g] for g in draw]),
                         [np.array([i]) for i in range(len(rs))], 60, fit_rng(0, name, "L_C"))
        for name, rs in (("lstm", a), ("transformer", b))
    )  # fmt: skip
    independent = compare_curves("lstm", fa, "transformer", fb, at, rng)
    assert independent.design == "independent"
    width = {c.design: c.loss_ratio_ci[1] - c.loss_ratio_ci[0] for c in (paired, independent)}
    assert width["paired over 12 matched points"] < 0.2 * width["independent"]  # the shared noise cancels
    assert paired.loss_ratio_ci[1] < 1.0  # and the 2 % difference is resolved


def test_runs_of_different_shapes_do_not_match():
    noise = np.zeros(12)
    b = [r for r in runs("transformer", 1.0, noise) if "d16" not in r.run]
    matched = match_points(group_points(runs("lstm", 1.0, noise)), group_points(b))
    assert len(matched) == 9
