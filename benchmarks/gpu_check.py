"""One prepared GPU check for a 10-minute window: measure, save with the device name, test the cost model's projection.

On a CUDA device, in bf16-mixed: training steps (`common.PlainLoop`) of the cuDNN `lstm`, the `transformer` and
`minlstm` (its log-space scan) at 3 widths x 3 sequence lengths at a fixed number of target tokens per step, plus
minLSTM's scan against its sequential loop at length 512 (Feng et al. 2024 report 175x on a GPU). Before anything
runs, `check_lstm_precision` reads the cuDNN version: below 9.13 the LSTM's recurrence runs in float32 (recorded
in the JSON as `lstm_recurrence_dtype`) instead of failing. Then, against the measurements:

- `projection_check`: the projection for this device, if the accelerator table has it (datasheet peak and
  bandwidth x the profile fitted on published GPU figures, the LSTM's recurrent cells timed by the cell model):
  relative error per point, median and max;
- `calibration`: the cost model fitted to these steps (its fit error, and the measured FLOP/s and step latency
  that replace the fitted profile's: `device_model(name, calibration=...)`);
- MFU per point against the table's bf16 peak.

    python -m benchmarks.gpu_check        # on the GPU (estimated 3-5 min) -> benchmarks/results/gpu_<device>.json
    python -m benchmarks.gpu_check --device cpu --quick --out /tmp/g.json   # the same code on CPU, seconds (a test)

Without a GPU nothing here produces a GPU number: `--device cpu` writes the CPU's name and CPU timings only.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_cost import ARCHS, cost_of, measure_point, model_cfg
from pipeline.cost.accelerators import ACCELERATORS, device_model, match_accelerator
from pipeline.cost.precision import check_lstm_precision, cudnn_version, run_recurrence_in
from pipeline.cost.step_time import DeviceModel, StepCost, calibrate, fit_error
from pipeline.cost.structure import StepShape, recurrent_cells

RESULTS = Path(__file__).resolve().parent / "results"
PROFILES: dict[str, dict[str, Any]] = {
    "cuda": {"widths": [512, 1024, 2048], "lengths": [64, 256, 1024], "tokens": 16384, "n_layers": 4,
             "warmup": 3, "steps": 10, "repeats": 2, "scan": {"batch": 64, "d": 512, "lengths": [512, 2048]}},
    "quick": {"widths": [16], "lengths": [8, 32], "tokens": 64, "n_layers": 1, "warmup": 1, "steps": 1,
              "repeats": 1, "scan": {"batch": 2, "d": 8, "lengths": [16]}},
}  # fmt: skip


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def default_out(name: str, device: torch.device) -> Path:
    if device.type != "cuda":  # a CPU run never lands among the committed GPU results
        return Path("runs") / "gpu-check-cpu.json"
    return RESULTS / f"gpu_{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.json"


def scan_vs_sequential(p: dict[str, Any], device: torch.device, repeats: int) -> list[dict[str, Any]]:
    """minLSTM's parallel scan vs its sequential loop, forward + backward, one layer (the Feng et al. anchor)."""
    from pipeline.models.minlstm import minlstm_parallel, minlstm_sequential

    rows = []
    for length in p["lengths"]:
        gen = torch.Generator().manual_seed(length)
        pre = [
            torch.randn(p["batch"], length, p["d"], generator=gen).to(device).requires_grad_()
            for _ in range(3)
        ]
        h0 = torch.full((p["batch"], p["d"]), 0.5, device=device)
        forms = {
            "scan": lambda pre=pre, h0=h0: minlstm_parallel(*pre, h0.log()).exp(),
            "sequential": lambda pre=pre, h0=h0: minlstm_sequential(*pre, h0),
        }
        ms = {}
        for form, fn in forms.items():
            times = []
            for _ in range(repeats + 1):  # the first is a warm-up
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                fn().square().sum().backward()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - t0)
            ms[form] = statistics.median(times[1:]) * 1e3
        rows.append({"seq_len": length, "scan_ms": ms["scan"], "sequential_ms": ms["sequential"],
                     "speedup": ms["sequential"] / ms["scan"]})  # fmt: skip
    return rows


def cost_with_cells(row: dict[str, Any]) -> StepCost:
    """A measured row's cost with its recurrent cells, which a GPU's cell model times (pipeline.cost.recurrent)."""
    cells, chain = recurrent_cells(row["arch"], {"n_layers": row["n_layers"]}, row["src_len"], row["seq_len"])
    return replace(cost_of(row), cells=cells, chain=chain, cell_batch=row["batch"] if cells else 0,
                   cell_width=row["d_model"] if cells else 0)  # fmt: skip


def projection_check(rows: list[dict[str, Any]], model: DeviceModel, key: str) -> dict[str, Any]:
    costs = [cost_with_cells(r) for r in rows]
    measured = [r["seconds"]["device_wall"]["median"] for r in rows]
    per_point = [{"arch": r["arch"], "d_model": r["d_model"], "seq_len": r["seq_len"], "measured_s": m,
                  "projected_s": model.predict(c), "bound": model.bound(c)}
                 for r, m, c in zip(rows, measured, costs, strict=True)]  # fmt: skip
    return {"against": key, "model": model.to_dict(), "fit_error": fit_error(model, costs, measured),
            "points": per_point}  # fmt: skip


def run(device: torch.device, quick: bool, precision: str, budget_s: float = 420.0,
        log: Any = print) -> dict[str, Any]:  # fmt: skip
    p = PROFILES["quick" if quick or device.type != "cuda" else "cuda"]  # CPU grids are bench_cost.py's job
    name = device_name(device)
    cudnn = cudnn_version() if device.type == "cuda" else None
    lstm_dtype = check_lstm_precision("lstm", precision, cudnn, device.type)  # ValueError only if told to
    key = match_accelerator(name) if device.type == "cuda" else None
    peak = (
        ACCELERATORS[key].peak(precision) if key else None
    )  # before the window is spent: a bad precision fails now
    grid = {"warmup": p["warmup"], "steps": p["steps"], "repeats": p["repeats"]}
    rows, failed, started = [], [], time.perf_counter()
    for d in p["widths"]:
        for length in p["lengths"]:
            shape = StepShape(max(1, p["tokens"] // length), length, length)
            for arch in ARCHS:
                point = f"{arch} d={d} T={length} B={shape.batch}"
                if time.perf_counter() - started > budget_s:  # the window is finite: keep what is measured
                    failed.append(f"{point}: skipped, past the {budget_s:.0f} s budget")
                    continue
                cfg = model_cfg(arch, d, p["n_layers"], length)
                prep = (lambda m: run_recurrence_in(m, lstm_dtype)) if arch == "lstm" else None
                try:
                    row = measure_point(arch, cfg, shape, grid, device, precision, None, prepare=prep)
                except torch.OutOfMemoryError as e:  # one size too big must not cost the whole window
                    failed.append(f"{point}: out of memory ({str(e).splitlines()[0]})")
                    torch.cuda.empty_cache()
                    continue
                row["tokens_per_s"] = shape.tokens / row["seconds"]["device_wall"]["median"]
                rows.append(row)
                log(f"{point:>34} {row['tokens_per_s']:>12,.0f} tok/s")
    for row in rows:
        achieved = row["flops"] / row["seconds"]["device_wall"]["median"]
        row["achieved_flops_per_s"] = achieved
        row["mfu"] = achieved / peak if peak else None
    costs = [cost_of(r) for r in rows]
    measured = [r["seconds"]["device_wall"]["median"] for r in rows]
    result: dict[str, Any] = {
        "device_name": name,
        "device_type": device.type,
        "accelerator_table_key": key,
        "precision": precision,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": cudnn,
        "lstm_recurrence_dtype": lstm_dtype,
        "profile": p,
        "rows": rows,
        "failed_or_skipped": failed,
        "scan_vs_sequential": scan_vs_sequential(p["scan"], device, p["repeats"]),
        "calibration": calibrate(costs, measured, name, form="max").to_dict() if len(rows) >= 4 else None,
    }
    if key:
        result["projection_check"] = projection_check(rows, device_model(key, precision), key)
    else:
        why = "not a CUDA device" if device.type != "cuda" else f"no table entry matches {name!r}"
        result["projection_check"] = {"skipped": why}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: the test of this script")
    ap.add_argument("--precision", default=None, choices=("bf16-mixed", "16-mixed", "32-true"),
                    help="default bf16-mixed on cuda, 32-true on cpu (peaks: pipeline/cost/accelerators.py)")  # fmt: skip
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="stop starting new grid points after this many seconds (default 420: a 10-min window)")  # fmt: skip
    ap.add_argument("--out", default=None, help="default benchmarks/results/gpu_<device>.json (cuda only)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False (use --device cpu --quick to test)",
              file=sys.stderr)  # fmt: skip
        return 2
    device = torch.device(args.device)
    precision = args.precision or ("bf16-mixed" if device.type == "cuda" else "32-true")
    started = time.perf_counter()
    result = {"command": "python -m benchmarks.gpu_check" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv)),
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}  # fmt: skip
    result |= run(device, args.quick, precision, args.budget_s)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out) if args.out else default_out(result["device_name"], device)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    check = result["projection_check"]
    if "fit_error" in check:
        e = check["fit_error"]
        print(f"table projection ({check['against']}) vs measured: median {e['median_rel_error']:.1%}, "
              f"max {e['max_rel_error']:.1%} relative error")  # fmt: skip
    else:
        print(f"projection check skipped: {check['skipped']}")
    if result["calibration"]:
        e = result["calibration"]["fit_error"]
        print(f"calibrated on this device: median {e['median_rel_error']:.1%}, max {e['max_rel_error']:.1%}")
    print(f"wrote {out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
