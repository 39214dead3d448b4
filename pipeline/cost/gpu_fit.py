"""Fit the GPU profile on the published figures marked "fit", and check it on every figure, held-out ones included.

Each figure is projected as its source counts it (`pipeline.cost.published`): GNMT in source + target tokens/s,
the Transformer in target tokens/s, DeepBench in milliseconds per training pass of one LSTM layer, all GPUs summed.
The fit is least squares on log(projected / published) (scipy), each source weighted equally however many rows it
has; then the all-reduce efficiency is fitted on the one multi-GPU row `MULTI_GPU_FIT`. Ratios > 1 mean the
projection is faster than the measurement.

    python -m pipeline.cost.gpu_fit            # fit, print the check
    python -m pipeline.cost.gpu_fit --write    # ... and write pipeline/cost/gpu_profile.json
"""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import least_squares

from pipeline.cost.accelerators import ACCELERATORS, device_model, precision_key
from pipeline.cost.gpu_profile import GpuProfile, save_profile
from pipeline.cost.multi_gpu import allreduce_s, data_parallel_tokens_per_s
from pipeline.cost.published import (
    GNMT_V2,
    KERNEL_FIGURES,
    MEAN_PAIR_TOKENS,
    MULTI_GPU_FIT,
    STEP_FIGURES,
    TRANSFORMER_BIG,
    KernelFigure,
    StepFigure,
    fit_subset,
)
from pipeline.cost.recurrent import cell_flops
from pipeline.cost.step_time import StepCost
from pipeline.cost.structure import StepShape, step_cost

SIDE_LEN = round(
    MEAN_PAIR_TOKENS / 2
)  # 24 tokens per side: the published mean pair, split evenly (an assumption)
# fitted coefficients: (start, lower bound, upper bound); the all-reduce efficiency is fitted after them
FIT_KEYS = {
    "step_efficiency": (0.3, 1e-3, 1.0),
    "overhead_s": (5e-3, 1e-6, 1.0),
    "gemm_efficiency": (0.5, 1e-3, 1.0),
    "weight_efficiency": (0.5, 1e-3, 1.0),
    "d_half": (500.0, 1.0, 1e5),
    "cell_latency_s": (10e-6, 1e-7, 1e-2),
    "step_efficiency_fp32": (0.5, 1e-3, 1.0),
    "gemm_efficiency_fp32": (0.8, 1e-3, 1.0),
    "gemm_d_half": (1000.0, 1.0, 1e5),
    "gemm_d_half_fp32": (300.0, 1.0, 1e5),
}
START = GpuProfile(**{k: v[0] for k, v in FIT_KEYS.items()})
HALF_WIDTH_STARTS = (0.3, 1.0, 3.0)  # starts of the fit: START's two cell-GEMM half-widths times these


@dataclass(frozen=True)
class Check:
    key: str
    split: str
    published: float
    projected: float
    unit: str
    convention: str
    source: str

    @property
    def ratio(self) -> float:
        """projected / published in the source's own direction (tokens/s: > 1 = projection faster)."""
        return self.projected / self.published


@functools.lru_cache(maxsize=8)
def _figure_cost(model: str, batch_per_gpu: int) -> tuple[StepCost, float]:
    """(the step's cost, tokens per step per GPU as the source counts them)."""
    if model == "gnmt_v2":
        cfg = {k: v for k, v in GNMT_V2.items() if k != "arch"}
        shape = StepShape(batch_per_gpu, SIDE_LEN, SIDE_LEN)
        return gnmt_cost(
            step_cost(GNMT_V2["arch"], cfg, shape), shape, cfg["d_model"]
        ), batch_per_gpu * MEAN_PAIR_TOKENS
    cfg = {k: v for k, v in TRANSFORMER_BIG.items() if k != "arch"}
    shape = StepShape(
        batch_per_gpu // SIDE_LEN, SIDE_LEN, SIDE_LEN
    )  # --max-tokens bounds rows x longest side
    return step_cost(TRANSFORMER_BIG["arch"], cfg, shape), float(shape.tokens)


def gnmt_cost(base: StepCost, shape: StepShape, d: int) -> StepCost:
    """NVIDIA's GNMT v2 from the project's `residual_lstm` at its size, plus what its README lists beyond it: a
    bidirectional first encoder layer (its reverse direction: S more cells, run beside the forward ones, and its
    FLOPs), a second encoder layer reading 2d, and decoder layers 2-4 reading [h, attention context] (2d)."""
    S, T, B = shape.src_len, shape.tgt_len, shape.batch
    extra_fwd = B * (S * 8.0 * (d + d) * d + S * 8.0 * d * d + T * 3 * 8.0 * d * d)
    params = 8 * d * d + 4 * d + 4 * 4 * d * d  # the reverse layer; 4d more inputs x 4 gates on four layers
    return replace(
        base, flops=base.flops + 3.0 * extra_fwd, params=base.params + params, cells=base.cells + 2 * S
    )


def grad_bytes(precision: str) -> float:
    """NVIDIA's fp16 runs (Apex amp O2 / FP16Optimizer) all-reduce fp16 model gradients; TF32/FP32 runs fp32 ones."""
    return 2.0 if precision_key(precision) in ("fp16", "bf16") else 4.0


def project_step_figure(fig: StepFigure, profile: GpuProfile) -> float:
    """Projected tokens/s of a published row, counted as its source counts, over its GPUs."""
    cost, counted = _figure_cost(fig.model, fig.batch_per_gpu)
    device = device_model(fig.accelerator, fig.precision, profile=profile)
    acc = ACCELERATORS[fig.accelerator]
    comm = allreduce_s(cost.params, grad_bytes(fig.precision), fig.gpus, acc.nvlink_bytes_per_s,
                       profile.allreduce_efficiency)  # fmt: skip
    return data_parallel_tokens_per_s(device.predict(cost), counted, comm, fig.gpus)


def project_kernel_figure(fig: KernelFigure, profile: GpuProfile) -> float:
    """Projected ms of a DeepBench row: forward and backward-data over T cells each, plus the weight gradient."""
    cell = device_model(fig.accelerator, fig.precision, profile=profile).cell
    assert cell is not None
    per_cell = cell.throughput_s(fig.batch, fig.hidden) + cell.latency_s
    weights = cell.gemm_s(cell_flops(fig.batch, fig.hidden) * fig.timesteps)
    return (2 * fig.timesteps * per_cell + weights) * 1e3


def _profile(theta: np.ndarray, base: GpuProfile) -> GpuProfile:
    return replace(base, **dict(zip(FIT_KEYS, (float(v) for v in np.exp(theta)), strict=True)))


def fit_profile(
    steps: Sequence[StepFigure], kernels: Sequence[KernelFigure], base: GpuProfile = START
) -> GpuProfile:
    """The profile's ten coefficients fitted on single-GPU step rows and kernel rows (log-ratio least squares)."""
    if any(f.gpus != 1 for f in steps):
        raise ValueError("fit_profile takes single-GPU rows; the all-reduce is fitted by fit_allreduce")
    groups: dict[str, int] = {}
    for f in steps:
        groups[f.model] = groups.get(f.model, 0) + 1
    groups["deepbench"] = len(kernels)
    w_steps = np.array([1 / math.sqrt(groups[f.model]) for f in steps])
    w_kern = np.full(len(kernels), 1 / math.sqrt(max(1, len(kernels))))

    def residuals(theta: np.ndarray) -> np.ndarray:
        p = _profile(theta, base)
        r_steps = [math.log(project_step_figure(f, p) / f.tokens_per_s) for f in steps]
        r_kern = [math.log(project_kernel_figure(k, p) / k.total_ms) for k in kernels]
        return np.concatenate([w_steps * r_steps, w_kern * r_kern])

    lower = np.log([lo for _, lo, _ in FIT_KEYS.values()])
    upper = np.log([hi for _, _, hi in FIT_KEYS.values()])
    best = None
    # the cell GEMM's FLOP-rate curve and its weight stream trade off against each other: several local minima
    for scale in HALF_WIDTH_STARTS:
        start = replace(base, **{k: getattr(base, k) * scale for k in ("gemm_d_half", "gemm_d_half_fp32")})
        x0 = np.clip(np.log([getattr(start, k) for k in FIT_KEYS]), lower, upper)
        sol = least_squares(residuals, x0, bounds=(lower, upper), x_scale=1.0, max_nfev=4000)
        if best is None or sol.cost < best.cost:
            best = sol
    assert best is not None
    return _profile(best.x, base)


def fit_allreduce(profile: GpuProfile, fig: StepFigure) -> GpuProfile:
    """The all-reduce efficiency that makes `fig` (a multi-GPU row) exact, all else fixed: closed form."""
    cost, counted = _figure_cost(fig.model, fig.batch_per_gpu)
    step = device_model(fig.accelerator, fig.precision, profile=profile).predict(cost)
    comm = fig.gpus * counted / fig.tokens_per_s - step  # the seconds the all-reduce must add
    if comm <= 0:
        raise ValueError(f"{fig.key}: the one-GPU projection is already slower than the published figure")
    unit = allreduce_s(cost.params, grad_bytes(fig.precision), fig.gpus,
                       ACCELERATORS[fig.accelerator].nvlink_bytes_per_s, 1.0)  # fmt: skip
    return replace(profile, allreduce_efficiency=unit / comm)


def fit() -> GpuProfile:
    """The committed procedure: the fit subset, then the all-reduce on `MULTI_GPU_FIT`."""
    steps, kernels = fit_subset()
    profile = fit_profile(steps, kernels)
    row = next(f for f in STEP_FIGURES if f.key == MULTI_GPU_FIT)
    return fit_allreduce(profile, row)


def split_of(fig: StepFigure) -> str:
    return "fit" if fig.split == "fit" or fig.key == MULTI_GPU_FIT else "held-out"


def check(profile: GpuProfile) -> list[Check]:
    """Every published figure next to its projection."""
    out = [Check(f.key, split_of(f), f.tokens_per_s, project_step_figure(f, profile), "tok/s", f.convention,
                 f.source) for f in STEP_FIGURES]  # fmt: skip
    out += [Check(k.key, k.split, k.total_ms, project_kernel_figure(k, profile), "ms", k.convention, k.source)
            for k in KERNEL_FIGURES]  # fmt: skip
    return out


def worst_ratio(checks: Sequence[Check]) -> float:
    """The largest factor between projection and figure, either way (1.3 = within 1.3x)."""
    return max(max(c.ratio, 1 / c.ratio) for c in checks)


def summary(checks: Sequence[Check]) -> dict[str, dict[str, float]]:
    """Per split: rows, median and max |log ratio| as a factor."""
    out = {}
    for split in ("fit", "held-out"):
        sub = [c for c in checks if c.split == split]
        factors = sorted(max(c.ratio, 1 / c.ratio) for c in sub)
        out[split] = {"n": len(sub), "median_factor": float(np.median(factors)), "max_factor": factors[-1]}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.cost.gpu_fit", description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help="write pipeline/cost/gpu_profile.json")
    args = p.parse_args(argv)
    profile = fit()
    checks = check(profile)
    for k, v in profile.to_dict().items():
        print(f"  {k:>22} = {v:.4g}")
    for split, s in summary(checks).items():
        print(
            f"  {split:>8}: {s['n']} figures, median factor {s['median_factor']:.3f}, max {s['max_factor']:.3f}"
        )
    if args.write:
        save_profile(profile, {"fitted_by": "python -m pipeline.cost.gpu_fit --write",
                               "check": summary(checks)})  # fmt: skip
        print("wrote pipeline/cost/gpu_profile.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
