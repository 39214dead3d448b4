"""Training tokens/s of the context study's LMs against the windows a step (`python -m benchmarks.lm_windows`).

Why: the natural-text context study (configs/sweeps/context-rerun-cpu.yaml) trains one BOS + 512-token window a
step. More windows a step would give the recurrences' per-timestep GEMMs more rows, which is what made them faster
at the memory-task shapes (benchmarks/README.md, roofline); whether that pays at this shape, where a 4,000-word
output projection and softmax run at every token, decides whether the study should batch more windows. Each
architecture at the study's d128 sizes takes full steps (forward, loss, backward, AdamW) on synthetic windows at
1..16 windows a step; the window counts are interleaved and repeated, and the JSON keeps the median tokens/s with
its repeats and the ratio to one window measured in the same run.

    OMP_NUM_THREADS=1 python -m benchmarks.lm_windows                 # ~3 min; benchmarks/results/lm_windows_cpu.json
    python -m benchmarks.lm_windows --windows 1 2 --seconds 1        # a smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import BenchSettings, machine_info
from pipeline.models.registry import build_model

VOCAB, CONTEXT = 4000, 512  # the study's vocabulary and window (configs/sweeps/context-rerun-cpu.yaml)
ARCHS: dict[str, dict[str, Any]] = {  # the study's d128 sizes
    "residual_lstm": dict(d_model=128, n_layers=3, residual_from=1, attention=False),
    "transformer": dict(d_model=128, n_layers=2, n_heads=4, max_len=CONTEXT + 1),
    "lstm": dict(d_model=128, n_layers=2, attention=False),
}
OUT = Path(__file__).resolve().parent / "results" / "lm_windows_cpu.json"


def _stepper(arch: str, windows: int) -> Any:
    torch.manual_seed(0)
    model = build_model(arch, vocab_size=VOCAB, task="lm", dropout=0.0, **ARCHS[arch])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = torch.randint(4, VOCAB, (windows, CONTEXT + 1))

    def step() -> None:
        logits = model.lm_forward(batch[:, :-1])
        loss = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: allocations, first-call costs
    return step


def _tokens_per_s(step: Any, windows: int, seconds: float) -> float:
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds or n < 2:
        step()
        n += 1
    return windows * CONTEXT * n / (time.perf_counter() - start)


def run(windows: list[int], seconds: float, repeats: int) -> dict[str, Any]:
    info = machine_info(BenchSettings())  # the load average before this run's own work
    rows = []
    for arch in ARCHS:
        steppers = {w: _stepper(arch, w) for w in windows}
        seen: dict[int, list[float]] = {w: [] for w in windows}
        for r in range(repeats):  # interleaved, the order reversed every other repeat
            for w in windows if r % 2 == 0 else windows[::-1]:
                seen[w].append(_tokens_per_s(steppers[w], w, seconds))
        base = statistics.median(seen[windows[0]])
        for w in windows:
            med = statistics.median(seen[w])
            rows.append({"arch": arch, "windows": w, "tokens_per_s": med, "repeats": seen[w],
                         f"vs_{windows[0]}_window": med / base})  # fmt: skip
            print(f"{arch:>14} {w:>3} windows: {med:>8,.0f} tokens/s ({med / base:.2f}x)", flush=True)
    return {"benchmark": "lm_windows", "vocab": VOCAB, "context": CONTEXT, "threads": torch.get_num_threads(),
            "seconds_per_timing": seconds, "machine": info, "rows": rows}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.lm_windows", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--windows", type=int, nargs="+", default=[1, 4, 8, 16], help="windows a step (first: the base)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds a timing (at least 2 steps)")
    parser.add_argument("--repeats", type=int, default=2, help="timings per window count, interleaved")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON path (default {OUT})")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = run(args.windows, args.seconds, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
