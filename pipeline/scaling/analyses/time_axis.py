"""The time axis: loss against hardware-seconds (measured) and against projected GPU-hours (cost model).

FLOPs cannot show the sequential bottleneck; time can. Two views:
- *Measured*: each record's training time x devices, grouped by device type (a CPU second and an H100 second are
  not the same unit), with its frontier (`fits.frontier.compute_frontier`) and a power law L(s) (`fits.laws.fit_power_law`).
  Records with `timing`/`hardware` use them; older ones fall back to `wall_time_s` and the config's
  `train.accelerator`/`devices`, and say so (`source`).
- *Projected* (always labelled a projection): each run's steps re-timed by `pipeline.cost` on a named accelerator,
  at the run's own lengths and at longer context lengths with the same tokens per batch, the loss held at what the
  run measured (an assumption: a longer context changes the task, too). From the frontiers: the smallest GPU-hour
  budget from which on each recurrent architecture stays behind the Transformer, and where fitted laws cross.

Only the context-length projection builds models (on the meta device, for their FLOPs formula), and only then is
torch imported; everything else is numpy/scipy like the rest of `pipeline.scaling`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.cost.accelerators import device_model
from pipeline.cost.projection import LABEL, model_config_of, shape_from_run_config
from pipeline.cost.projection import projected_seconds as cost_projected_seconds
from pipeline.cost.step_time import DeviceModel
from pipeline.scaling.fits.bootstrap import fit_power_law_bootstrap
from pipeline.scaling.fits.crossing import REFERENCE_ARCH, compare_curves
from pipeline.scaling.fits.frontier import compute_frontier
from pipeline.scaling.fits.laws import FitResult
from pipeline.scaling.records.run_record import RunRecord

ACCELERATORS = ("h100-sxm", "a100-sxm")
CONTEXT_LENGTHS: tuple[int | None, ...] = (None, 256, 1024, 4096)  # None = each run's own mean lengths


def hardware_seconds(record: RunRecord) -> tuple[str, float, str] | None:
    """(device type, device-seconds of training, source) of a record, or None when it holds no time."""
    hw, timing = record.hardware or {}, record.timing or {}
    train = record.config.get("train") or {}
    count = hw.get("count") or int(train.get("devices") or 1) * int(train.get("num_nodes") or 1)
    device = hw.get("device_type") or hw.get("device") or train.get("accelerator") or "unknown"
    if timing.get("train_wall_s"):
        return str(device), float(timing["train_wall_s"]) * count, "timing.train_wall_s"
    if record.wall_time_s > 0:
        return str(device), record.wall_time_s * count, "wall_time_s (record without timing)"
    return None


def _arch_curve(runs: Sequence[RunRecord], x: Sequence[float], n_boot: int) -> dict[str, Any]:
    loss = [r.final_valid_loss for r in runs]
    idx = compute_frontier(x, loss)
    fx, fl = [x[i] for i in idx], [loss[i] for i in idx]
    fit = fit_power_law_bootstrap(fx, fl, n_boot=n_boot)
    return {"x": list(x), "loss": loss, "runs": [r.run for r in runs], "frontier": [int(i) for i in idx],
            "fit": fit}  # fmt: skip


def measured_curves(records: Sequence[RunRecord], n_boot: int = 0) -> dict[str, dict[str, Any]]:
    """{device type: {arch: curve}} of loss against device-seconds; each curve also lists its time sources."""
    groups: dict[str, dict[str, list[tuple[RunRecord, float, str]]]] = {}
    for r in records:
        hs = hardware_seconds(r)
        if hs is not None and hs[1] > 0:  # a record with no measured time (0 s) has no place on a log axis
            groups.setdefault(hs[0], {}).setdefault(r.arch, []).append((r, hs[1], hs[2]))
    out: dict[str, dict[str, Any]] = {}
    for device, archs in sorted(groups.items()):
        out[device] = {}
        for arch, items in sorted(archs.items()):
            curve = _arch_curve([i[0] for i in items], [i[1] for i in items], n_boot)
            curve["sources"] = sorted({i[2] for i in items})
            out[device][arch] = curve
    return out


def projected_seconds(record: RunRecord, device: DeviceModel, context: int | None = None) -> float:
    """Seconds `device` would take for this run's training tokens (one device), per the calibrated cost model
    (`pipeline.cost.projection.projected_seconds`: on a GPU the LSTM family's recurrent cells are timed by the
    cuDNN cell model fitted on published measurements, not by FLOPs at one efficiency). At the run's own lengths
    the record's FLOPs are used; at another `context` the model's formula (which builds the model on the meta
    device: torch is imported only then)."""
    arch, cfg = model_config_of(record.config)
    shape = shape_from_run_config(record.config, context, context)
    flops = record.flops_per_token * shape.tokens if context is None else None
    return cost_projected_seconds(arch, cfg, shape, record.tokens, device, flops=flops, params=record.params)


def first_behind(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """Smallest budget from which on a's frontier (best loss within the budget) stays above b's, up to the
    largest budget *both* reached (beyond it one frontier is flat only because its grid stopped); None if a is not
    behind there."""
    xa, la = np.array(a["x"])[a["frontier"]], np.array(a["loss"])[a["frontier"]]
    xb, lb = np.array(b["x"])[b["frontier"]], np.array(b["loss"])[b["frontier"]]
    if not xa.size or not xb.size:
        return None
    grid = np.unique(np.concatenate([xa, xb]))
    lo, hi = common_range(a, b)
    lo = max(lo, float(xa.min()), float(xb.min()))  # below a frontier's first point it has no best loss yet
    if lo > hi:  # no budget both reached: nothing to compare (the caller says which side is dearer)
        return None
    grid = grid[(grid >= lo) & (grid <= hi)]

    def best(x: np.ndarray, loss: np.ndarray, budget: float) -> float:
        within = loss[x <= budget]
        return float(within.min()) if within.size else math.inf

    behind = [best(xa, la, h) > best(xb, lb, h) for h in grid]
    if not behind or not behind[-1]:
        return None
    k = len(behind) - 1
    while k > 0 and behind[k - 1]:
        k -= 1
    return float(grid[k])


def common_range(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float]:
    """The budgets both curves cover: from the larger of their smallest to the smaller of their largest."""
    if not a["x"] or not b["x"]:
        return math.inf, -math.inf  # an empty curve covers nothing
    return max(min(a["x"]), min(b["x"])), min(max(a["x"]), max(b["x"]))


def _vs_reference(curves: dict[str, dict[str, Any]], scale: float) -> dict[str, Any]:
    """Each recurrent arch against the Transformer: first budget it is behind from, fitted-law crossings."""
    out: dict[str, Any] = {}
    ref = curves.get(REFERENCE_ARCH)
    if ref is None:
        return out
    for arch, c in curves.items():
        if arch == REFERENCE_ARCH or not c["x"] or not ref["x"]:
            continue
        fb = first_behind(c, ref)
        entry: dict[str, Any] = {"first_behind": None if fb is None else fb * scale, "fit_crossings": [],
                                 "common_range": [v * scale for v in common_range(c, ref)]}  # fmt: skip
        if min(c["x"]) > max(ref["x"]):
            entry["no_overlap"] = f"every {arch} run took longer than the longest {REFERENCE_ARCH} run"
        elif min(ref["x"]) > max(c["x"]):
            entry["no_overlap"] = f"every {REFERENCE_ARCH} run took longer than the longest {arch} run"
        fa, fr = c["fit"], ref["fit"]
        if not (fa.underdetermined or fr.underdetermined):
            hi = min(max(c["x"]), max(ref["x"]))
            rng = (min(min(c["x"]), min(ref["x"])) / 10, max(max(c["x"]), max(ref["x"])) * 10)
            cross = compare_curves(arch, fa, REFERENCE_ARCH, fr, hi, rng)
            entry["fit_crossings"] = [x * scale for x in cross.crossings]
            entry["loss_ratio_at_largest_common"] = cross.loss_ratio
        out[arch] = entry
    return out


def projected_curves(records: Sequence[RunRecord], accelerator: str, context: int | None,
                     n_boot: int = 0) -> dict[str, Any]:  # fmt: skip
    """Loss against projected GPU-hours on `accelerator` per arch, and the comparison with the Transformer."""
    device = device_model(accelerator, "bf16-mixed")
    by_arch: dict[str, list[tuple[RunRecord, float]]] = {}
    skipped = []
    for r in records:
        try:
            by_arch.setdefault(r.arch, []).append((r, projected_seconds(r, device, context) / 3600))
        except ValueError as e:
            skipped.append(f"{r.run}: {e}")
    curves = {a: _arch_curve([i[0] for i in items], [i[1] for i in items], n_boot)
              for a, items in sorted(by_arch.items())}  # fmt: skip
    return {"label": LABEL, "device": device.to_dict(), "context_length": context, "curves": curves,
            "vs_transformer": _vs_reference(curves, 1.0), "skipped": skipped}  # fmt: skip


def _curve_json(c: dict[str, Any], unit: str) -> dict[str, Any]:
    fit: FitResult = c["fit"]
    front = [{"run": c["runs"][i], unit: c["x"][i], "loss": c["loss"][i]} for i in c["frontier"]]
    return {"n_runs": len(c["runs"]), "frontier": front, "fit": fit.to_dict(),
            **({"sources": c["sources"]} if "sources" in c else {})}  # fmt: skip


@dataclass(frozen=True)
class TimeAxis:
    """Loss against measured device-seconds per device type and against projected GPU-hours per accelerator and
    context length, each with its frontier, fitted law and comparison with the reference architecture."""

    measured: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # device -> arch -> curve
    measured_vs_reference: dict[str, dict[str, Any]] = field(default_factory=dict)  # device -> arch -> entry
    # accelerator -> context ("own" or a length) -> `projected_curves`, in the order asked for
    projected: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    note: str = ""  # why there is no time axis (no fitted runs)

    @property
    def first_projection(self) -> dict[str, Any] | None:
        """The first accelerator's first context: the projection the figure draws."""
        for by_ctx in self.projected.values():
            return next(iter(by_ctx.values()), None)
        return None

    def to_dict(self) -> dict[str, Any]:
        """The ``time_axis`` entry of fit.json."""
        if self.note:
            return {"note": self.note}
        return {
            "measured": {
                dev: {a: _curve_json(c, "device_s") for a, c in cs.items()}
                for dev, cs in self.measured.items()
            },
            "measured_vs_transformer": self.measured_vs_reference,
            "projected": {
                acc: {
                    ctx: {
                        "label": p["label"],
                        "device": p["device"],
                        "skipped": p["skipped"],
                        "archs": {a: _curve_json(c, "gpu_hours") for a, c in p["curves"].items()},
                        "vs_transformer": p["vs_transformer"],
                    }
                    for ctx, p in by_ctx.items()
                }
                for acc, by_ctx in self.projected.items()
            },  # fmt: skip
        }


def time_axis(records: Sequence[RunRecord], n_boot: int = 0, accelerators: Sequence[str] = ACCELERATORS,
              context_lengths: Sequence[int | None] = CONTEXT_LENGTHS) -> TimeAxis:  # fmt: skip
    """The time axis of ``records`` (the fitted runs): measured per device type, projected per accelerator and
    context length (None = each run's own lengths)."""
    if not records:
        return TimeAxis(note="no fitted runs (every run was left out, e.g. as having learned nothing)")
    measured = measured_curves(records, n_boot)
    return TimeAxis(
        measured=measured,
        measured_vs_reference={dev: _vs_reference(cs, 1.0) for dev, cs in measured.items()},
        projected={
            acc: {str(ctx or "own"): projected_curves(records, acc, ctx, n_boot) for ctx in context_lengths}
            for acc in accelerators
        },  # fmt: skip
    )
