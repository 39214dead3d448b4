"""Calibrate the step-time cost model (pipeline/cost) on this CPU, report its fit error, check it at 1 vs 2 threads.

Tokens/s of real training steps (`common.PlainLoop`: forward, loss, backward, clip, AdamW) of `lstm`, `transformer`
and `minlstm` over a grid of batch size x sequence length x width, on full-length synthetic batches (vocabulary
1000, as in seq_len.py: only the shape changes). Each grid point is timed at 1 and at 2 torch threads, the two
interleaved so that a neighbour's load hits both; the fit uses the minimum over repeats (the least-disturbed
step on a shared machine; median and all repeats are stored too). Then:

- calibrate `max(F / R, D * lat) + opt + c` (and the `sum` form) per thread count, with fit error;
- the thread check: the 1-thread fit with twice the FLOP/s (`DeviceModel.scaled(2)`) predicts the 2-thread step
  times (the cost model's claim: more parallel hardware speeds up the compute term only). Its error, and measured
  vs predicted 2-thread speedups per architecture, go into the JSON.

    python -m benchmarks.bench_cost    # 921 s at load ~12 on 2 cores, most of it at 2 threads -> results/cost_cpu.json
    python -m benchmarks.bench_cost --quick --out /tmp/cost.json     # tiny grid, seconds

Timings are only as quiet as the machine: the JSON keeps the load average at the start; read the ratios and the
fit error. (Under a load of ~12 on 2 cores the full grid took 921 s and the 1 vs 2 thread check was unreadable;
on an idle machine it takes about half a minute.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Clock, PlainLoop, synchronize, synthetic_batches
from pipeline.config import OptimConfig
from pipeline.cost.projection import step_cost
from pipeline.cost.step_time import Calibration, DeviceModel, StepCost, calibrate, fit_error
from pipeline.cost.structure import StepShape
from pipeline.models.registry import build_model

RESULTS = Path(__file__).resolve().parent / "results"
VOCAB = 1000
ARCHS = ("lstm", "transformer", "minlstm")
NOISE = "wall-clock timings: as quiet as the machine was (see load_average_at_start)"
GRIDS: dict[str, dict[str, Any]] = {
    "quick": {"widths": [16], "batches": [2, 8], "lengths": [8, 32], "n_layers": 1, "warmup": 1, "steps": 1,
              "repeats": 1, "threads": [1, 2]},
    "cpu": {"widths": [32, 128], "batches": [4, 16], "lengths": [16, 64, 256], "n_layers": 2, "warmup": 1,
            "steps": 2, "repeats": 2, "threads": [1, 2]},
}  # fmt: skip


def model_cfg(arch: str, d_model: int, n_layers: int, max_len: int) -> dict[str, Any]:
    cfg: dict[str, Any] = {"vocab_size": VOCAB, "d_model": d_model, "n_layers": n_layers, "dropout": 0.0}
    if arch == "transformer":
        cfg |= {"n_heads": max(1, d_model // 32), "max_len": max(512, max_len)}
    return cfg


def time_steps(loop: PlainLoop, batches: list[dict[str, Any]], steps: int) -> tuple[float, float]:
    """(wall, process CPU) seconds per training step over `steps` steps (device synchronised at both ends)."""
    synchronize(loop.device)
    start = Clock.now()
    for i in range(steps):
        loop.step(batches[i % len(batches)])
    synchronize(loop.device)
    t = Clock.now() - start
    return t.wall / steps, t.cpu / steps


def measure_point(arch: str, cfg: dict[str, Any], shape: StepShape, grid: dict[str, Any],
                  device: torch.device, precision: str, threads: list[int] | None,
                  prepare: Callable[[torch.nn.Module], Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """One grid point: seconds per step at each thread count (None: leave threads alone, e.g. on a GPU).
    `prepare(model)` runs on the built model first (gpu_check: the LSTM's recurrence dtype)."""
    torch.manual_seed(0)
    model = build_model(arch, **cfg)
    if prepare is not None:
        prepare(model)
    loop = PlainLoop(model, OptimConfig(), 10**6, device, precision)
    if shape.src_len != shape.tgt_len:
        raise ValueError(f"{shape}: the benchmark's synthetic batches have src_len == tgt_len")
    batches = synthetic_batches(shape.tgt_len, shape.tokens, VOCAB, n=2, seed=shape.tgt_len)
    keys = [f"threads_{t}" for t in threads] if threads else ["device"]
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in keys}
    for _ in range(grid["warmup"]):
        loop.step(batches[0])
    for r in range(grid["repeats"]):
        for k in keys[:: 1 if r % 2 == 0 else -1]:
            if threads:
                torch.set_num_threads(int(k.split("_")[1]))
            samples[k].append(time_steps(loop, batches, grid["steps"]))
    cost = step_cost(arch, cfg, shape)
    return {
        "arch": arch,
        "d_model": cfg["d_model"],
        "n_layers": cfg["n_layers"],
        "batch": shape.batch,
        "src_len": shape.src_len,
        "seq_len": shape.tgt_len,
        "tokens": shape.tokens,
        "flops": cost.flops,
        "depth": cost.depth,
        "params": cost.params,
        "seconds": {
            f"{k}_{clock}": _stats([v[i] for v in vs])
            for k, vs in samples.items()
            for i, clock in enumerate(("wall", "cpu"))
        },  # fmt: skip
    }


def _stats(values: list[float]) -> dict[str, Any]:
    return {"min": min(values), "median": statistics.median(values), "all": values}


def cost_of(row: dict[str, Any]) -> StepCost:
    return StepCost(row["flops"], row["depth"], row["params"])


def memory_bandwidth(n_bytes: int = 64 * 2**20, repeats: int = 5) -> float:
    """Bytes/s of a large tensor copy (read + write) at the current thread count: the optimizer's memory term."""
    src = torch.ones(n_bytes // 4)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * n_bytes / best


def fit_all(
    rows: list[dict[str, Any]], key: str, name: str, bytes_per_s: float | None
) -> dict[str, Calibration]:
    costs = [cost_of(r) for r in rows]
    seconds = [r["seconds"][key]["min"] for r in rows]
    return {
        form: calibrate(costs, seconds, name, form=form, bytes_per_s=bytes_per_s) for form in ("max", "sum")
    }


def thread_check(rows: list[dict[str, Any]], one: DeviceModel, two: DeviceModel) -> dict[str, Any]:
    """The 1-thread fit at 2x FLOP/s against the measured 2-thread steps; speedups per architecture."""
    scaled = one.scaled(2.0)
    costs = [cost_of(r) for r in rows]
    measured2 = [r["seconds"]["threads_2_wall"]["min"] for r in rows]
    per_arch: dict[str, Any] = {}
    for arch in sorted({r["arch"] for r in rows}):
        rs = [r for r in rows if r["arch"] == arch]
        meas = [r["seconds"]["threads_1_wall"]["min"] / r["seconds"]["threads_2_wall"]["min"] for r in rs]
        pred = [one.predict(cost_of(r)) / scaled.predict(cost_of(r)) for r in rs]
        per_arch[arch] = {"measured_speedup_median": statistics.median(meas),
                          "predicted_speedup_median": statistics.median(pred),
                          "measured_speedups": meas, "predicted_speedups": pred}  # fmt: skip
    return {
        "what": "1-thread wall-clock calibration with 2x flops_per_s, same latency and overhead, predicting the "
        "2-thread wall-clock steps",
        "fit_error_of_scaled_1_thread_model": fit_error(scaled, costs, measured2),
        "fitted_flops_ratio_2_over_1": two.flops_per_s / one.flops_per_s,
        "fitted_latency_ratio_2_over_1": two.step_latency_s / one.step_latency_s,
        "per_arch": per_arch,
    }


def run(quick: bool = False, log: Any = print) -> dict[str, Any]:
    grid = GRIDS["quick" if quick else "cpu"]
    threads_before = torch.get_num_threads()
    device = torch.device("cpu")
    rows = []
    try:
        torch.set_num_threads(1)
        bandwidth = memory_bandwidth()
        points = itertools.product(grid["widths"], grid["batches"], grid["lengths"], ARCHS)
        for d, b, length, arch in points:
            cfg = model_cfg(arch, d, grid["n_layers"], length)
            row = measure_point(
                arch, cfg, StepShape(b, length, length), grid, device, "32-true", grid["threads"]
            )
            rows.append(row)
            s = row["seconds"]
            log(f"{arch:>12} d={d:<4} B={b:<3} T={length:<4} " + "  ".join(
                f"{k}: {b * length / v['min']:>8.0f} tok/s" for k, v in s.items() if "1_cpu" in k or "wall" in k))  # fmt: skip
    finally:
        torch.set_num_threads(threads_before)
    # The headline (`threads_1`, what device_model("cpu") loads) is fitted to process CPU time: with one thread
    # it is this process's work alone, whatever the neighbours do. 1 vs 2 threads can only compare wall clocks.
    calib = {}
    for key, name in (("threads_1_cpu", "threads_1"), ("threads_1_wall", "threads_1_wall"),
                      ("threads_2_wall", "threads_2_wall")):  # fmt: skip
        fits = fit_all(rows, key, f"cpu ({key.replace('_', ' ')})", bandwidth)
        calib[name] = fits["max"].to_dict()
        calib[f"{name}_sum_form"] = fits["sum"].to_dict()
    # Per architecture (1 thread, CPU time): does the form hold within one arch, and how far apart are the archs'
    # sustained FLOP/s? (The FLOP count is matmuls only; minLSTM's log-space scan is elementwise work it omits.)
    per_arch = {}
    for arch in ARCHS:
        arch_rows = [r for r in rows if r["arch"] == arch]
        if len(arch_rows) >= 4:
            per_arch[arch] = fit_all(arch_rows, "threads_1_cpu", f"cpu (1 thread, {arch})", bandwidth)[
                "max"
            ].to_dict()
    one = DeviceModel(**calib["threads_1_wall"]["model"])
    two = DeviceModel(**calib["threads_2_wall"]["model"])
    return {
        "note": NOISE,
        "clock": "minimum over repeats (median and every repeat stored per point); threads_1 is fitted to "
        "process CPU time, the 1 vs 2 thread check to wall clock",
        "grid": grid,
        "archs": list(ARCHS),
        "vocab_size": VOCAB,
        "memory_bytes_per_s_1_thread": bandwidth,
        "rows": rows,
        "calibration": calib,
        "calibration_per_arch": per_arch,
        "thread_check": thread_check(rows, one, two),
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"cost model fit ({result['note']}):"]
    for key, c in result["calibration"].items():
        m, e = c["model"], c["fit_error"]
        lines.append(f"  {key:>20}: R={m['flops_per_s']:.3g} FLOP/s, latency={m['step_latency_s'] * 1e6:.1f} us, "
                     f"overhead={m['overhead_s'] * 1e3:.2f} ms; rel. error median {e['median_rel_error']:.1%}, "
                     f"max {e['max_rel_error']:.1%} (n={e['n']})")  # fmt: skip
    for arch, c in result["calibration_per_arch"].items():
        m, e = c["model"], c["fit_error"]
        lines.append(f"  {arch + ' only (1 thread, CPU time)':>34}: R={m['flops_per_s']:.3g} FLOP/s, "
                     f"latency={m['step_latency_s'] * 1e6:.1f} us; rel. error median {e['median_rel_error']:.1%}, "
                     f"max {e['max_rel_error']:.1%}")  # fmt: skip
    tc = result["thread_check"]
    e = tc["fit_error_of_scaled_1_thread_model"]
    lines.append(
        f"  1->2 threads: scaled 1-thread model on 2-thread steps: median {e['median_rel_error']:.1%}, "
        f"max {e['max_rel_error']:.1%}; fitted FLOP/s ratio {tc['fitted_flops_ratio_2_over_1']:.2f}"
    )
    for arch, s in tc["per_arch"].items():
        lines.append(f"  {arch:>12}: 2-thread speedup measured {s['measured_speedup_median']:.2f}x, "
                     f"predicted {s['predicted_speedup_median']:.2f}x (medians)")  # fmt: skip
    return lines


def run_suite(quick: bool, out_dir: Path, log: Any = print) -> dict[str, Any]:
    """`make bench`'s entry (benchmarks/run.py): write `<out_dir>/cost_cpu.json`, return the fit summary."""
    result = run(quick, log)
    result["command"] = "python -m benchmarks.run --suites cost" + (" --quick" if quick else "")
    path = Path(out_dir) / "cost_cpu.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return {"file": path.name, "calibration": {k: v["fit_error"] for k, v in result["calibration"].items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny grid, one repeat (seconds): a smoke test")
    p.add_argument("--out", default=str(RESULTS / "cost_cpu.json"))
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = time.perf_counter()
    result = {"command": "python -m benchmarks.bench_cost" + "".join(f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)),
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "torch": torch.__version__,
              "cpu_cores": os.cpu_count(), "load_average_at_start": list(os.getloadavg())}  # fmt: skip
    result |= run(args.quick)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(summary_lines(result)))
    print(f"wrote {out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
