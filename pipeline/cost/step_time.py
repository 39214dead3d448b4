"""Step time from structure: t = max(FLOPs / (peak * efficiency), depth * step_latency) + optimizer + overhead.

Two limits bound a training step. Throughput: the FLOPs at the rate the device sustains (`flops_per_s`, i.e.
peak x efficiency). Latency: `depth` dependent layer steps, none of which can start before the previous one ends,
each costing at least `step_latency_s`, however wide the device. Which one binds is the thesis of the project: an
LSTM's depth grows with sequence length, a Transformer's does not. On top: the optimizer, which streams every
parameter and its Adam state through memory once per step (`OPTIMIZER_BYTES_PER_PARAM / bytes_per_s`), and a fixed
per-step host overhead.

`form="sum"` (compute + latency instead of the max) is the alternative for hardware that cannot overlap the two,
such as one CPU thread, where a small per-step op costs its dispatch time *and* its arithmetic.

On a GPU with a cuDNN cell model (`DeviceModel.cell`, `pipeline.cost.recurrent`) a step with recurrent `cells`
costs its parallel FLOPs (all but the cells' GEMMs) at the sustained rate *plus* the cells: each its GEMM time, and
each cell on the chain its latency. cuDNN runs the cells between the parallel GEMMs, so the two add.

Calibration is a 3-parameter least-squares fit in log space (scipy): each step counts by its relative error, which
is what "fit error" reports (median and max of |predicted / measured - 1|). Written here because no library fits
this particular form; scipy does the optimisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from pipeline.cost.recurrent import CellModel, cell_flops

# AdamW in fp32: read param, grad, m, v and write param, m, v (7 x 4 bytes), plus zeroing the grad (4 bytes).
OPTIMIZER_BYTES_PER_PARAM = 32.0
FORMS = ("max", "sum")


@dataclass(frozen=True)
class StepCost:
    """What one training step asks for: FLOPs, dependent layer steps (`pipeline.cost.structure`), parameters."""

    flops: float
    depth: int
    params: int = 0
    cells: int = (
        0  # cuDNN recurrent cells (layer x step, forward + backward wrt inputs); 0: no cuDNN recurrence
    )
    chain: int = 0  # of those, cells on the critical path (fewer under cuDNN's layer wavefront)
    cell_batch: int = 0  # the cells' GEMM shape: batch x 4 width x width
    cell_width: int = 0


@dataclass(frozen=True)
class DeviceModel:
    """The calibrated (or assumed) speed of one device type; `predict` gives seconds per training step."""

    name: str
    flops_per_s: float  # sustained: peak x efficiency
    step_latency_s: float  # one dependent layer step
    overhead_s: float  # fixed per step (host, launches outside the chain)
    bytes_per_s: float | None = (
        None  # memory bandwidth for the optimizer's traffic; None = folded into overhead
    )
    form: str = "max"
    cell: CellModel | None = None  # a GPU's cuDNN cell model: costs with `cells` take the recurrent path

    def __post_init__(self) -> None:
        if isinstance(self.cell, dict):  # from JSON
            object.__setattr__(self, "cell", CellModel(**self.cell))
        if self.form not in FORMS:
            raise ValueError(f"DeviceModel.form={self.form!r}: must be one of {FORMS}")
        for key in ("flops_per_s", "step_latency_s"):
            if not getattr(self, key) > 0:
                raise ValueError(f"DeviceModel.{key}={getattr(self, key)!r}: must be > 0")
        if self.overhead_s < 0:
            raise ValueError(f"DeviceModel.overhead_s={self.overhead_s!r}: must be >= 0")

    def _recurrent(self, cost: StepCost) -> bool:
        return self.cell is not None and cost.cells > 0

    def compute_s(self, cost: StepCost) -> float:
        """The parallel work: every FLOP outside the recurrent cells' GEMMs at the sustained rate."""
        if self._recurrent(cost):
            rest = cost.flops - cost.cells * cell_flops(cost.cell_batch, cost.cell_width)
            return max(0.0, rest) / self.flops_per_s
        return cost.flops / self.flops_per_s

    def latency_s(self, cost: StepCost) -> float:
        """The dependent chain: layer steps x step latency, or on the recurrent path the cells' own time."""
        if self._recurrent(cost):
            assert self.cell is not None
            return (cost.cells * self.cell.throughput_s(cost.cell_batch, cost.cell_width)
                    + cost.chain * self.cell.latency_s)  # fmt: skip
        return cost.depth * self.step_latency_s

    def optimizer_s(self, cost: StepCost) -> float:
        if not self.bytes_per_s or not cost.params:
            return 0.0
        return cost.params * OPTIMIZER_BYTES_PER_PARAM / self.bytes_per_s

    def predict(self, cost: StepCost) -> float:
        c, lat = self.compute_s(cost), self.latency_s(cost)
        # cuDNN runs the recurrent cells between the parallel GEMMs, not under them: their times add
        overlap = self.form == "max" and not self._recurrent(cost)
        core = max(c, lat) if overlap else c + lat
        return core + self.optimizer_s(cost) + self.overhead_s

    def bound(self, cost: StepCost) -> str:
        """Which term of the max binds this step: "compute" or "latency"."""
        return "latency" if self.latency_s(cost) > self.compute_s(cost) else "compute"

    def scaled(self, flops_factor: float) -> DeviceModel:
        """The same device with `flops_factor` x the sustained FLOP/s (e.g. 2 threads instead of 1) and the same
        latency: what the model says more parallel hardware buys."""
        return replace(self, flops_per_s=self.flops_per_s * flops_factor)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def relative_errors(model: DeviceModel, costs: Sequence[StepCost], seconds: Sequence[float]) -> np.ndarray:
    """|predicted / measured - 1| per step."""
    pred = np.array([model.predict(c) for c in costs])
    return np.abs(pred / np.asarray(seconds, dtype=float) - 1.0)


def fit_error(model: DeviceModel, costs: Sequence[StepCost], seconds: Sequence[float]) -> dict[str, float]:
    """Median and max relative error of `model` on these measurements (the number the docs report)."""
    err = relative_errors(model, costs, seconds)
    return {"median_rel_error": float(np.median(err)), "max_rel_error": float(err.max()), "n": int(len(err))}


@dataclass
class Calibration:
    model: DeviceModel
    error: dict[str, float]
    converged: bool
    n_points: int

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "fit_error": self.error, "converged": self.converged,
                "n_points": self.n_points}  # fmt: skip


def calibrate(
    costs: Sequence[StepCost],
    seconds: Sequence[float],
    name: str,
    form: str = "max",
    bytes_per_s: float | None = None,
) -> Calibration:
    """Fit flops_per_s, step_latency_s and overhead_s to measured seconds per step (log-space least squares).

    Needs >= 4 steps of different shapes; points where both terms bind are what make latency and throughput
    separable (a grid over width and sequence length gives both). A soft-L1 loss keeps one step slowed by a
    neighbour process from pulling the fit. Several starts; the lowest cost wins."""
    if form not in FORMS:
        raise ValueError(f"calibrate: form={form!r}: must be one of {FORMS}")
    if len(costs) != len(seconds):
        raise ValueError(f"calibrate: {len(costs)} costs but {len(seconds)} timings")
    if len(costs) < 4:
        raise ValueError(f"calibrate: {len(costs)} measurements; needs >= 4 for 3 parameters")
    t = np.asarray(seconds, dtype=float)
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError("calibrate: every measured step time must be finite and > 0")
    flops = np.array([c.flops for c in costs], dtype=float)
    depth = np.array([c.depth for c in costs], dtype=float)
    opt_bytes = np.array([c.params for c in costs], dtype=float) * OPTIMIZER_BYTES_PER_PARAM
    opt_s = opt_bytes / bytes_per_s if bytes_per_s else np.zeros_like(t)
    log_t = np.log(t)

    def predict(theta: np.ndarray) -> np.ndarray:
        rate, lat, over = np.exp(theta)
        c, s = flops / rate, depth * lat
        core = np.maximum(c, s) if form == "max" else c + s
        return core + opt_s + over

    def residuals(theta: np.ndarray) -> np.ndarray:
        return np.log(predict(theta)) - log_t

    rate0 = float(np.max(flops / t))  # no step ran faster than its FLOPs allow
    lat0 = float(np.min(t / depth))
    over0 = float(np.min(t)) * 0.1
    best = None
    for f_rate in (0.5, 1.0, 2.0):
        for f_lat in (0.1, 0.5, 1.0):
            x0 = np.log([rate0 * f_rate, lat0 * f_lat, over0])
            sol = least_squares(residuals, x0, loss="soft_l1", f_scale=0.1, x_scale=1.0, max_nfev=2000)
            if best is None or sol.cost < best.cost:
                best = sol
    rate, lat, over = (float(v) for v in np.exp(best.x))
    model = DeviceModel(name, rate, lat, over, bytes_per_s, form)
    return Calibration(model, fit_error(model, costs, seconds), bool(best.success), len(costs))


def tokens_per_s(model: DeviceModel, cost: StepCost, tokens_per_step: int) -> float:
    """Training target tokens per second at this step shape."""
    return tokens_per_step / model.predict(cost)
