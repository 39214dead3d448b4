"""Step time of DeepSpeed ZeRO-1/2/3 against DDP at the same model size, 2 ranks on CPU (gloo).

    python -m benchmarks.bench_zero                 # ~3-5 min on a shared 2-core box -> benchmarks/results/zero_cpu.json
    python -m benchmarks.bench_zero --steps 6       # quicker, noisier

Each strategy is one real `pipeline` training run (`fit`, 2 processes started by Lightning's launcher, which re-runs
this file with `--worker`). Rank 0 times every training step (wall clock and its own process CPU time) from batch
start to batch end, which covers forward, backward, the gradient reduce(-scatter), clipping, the optimizer step and
ZeRO-3's parameter all-gathers; the first `--warmup` steps are dropped and the median is reported. Ratios are
against DDP. On a shared CPU the wall clock includes waiting for the other rank and for other jobs: read the load
average stored with the results before comparing machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results"
STRATEGIES = {
    "ddp": ["train.strategy=ddp"],
    "zero1": ["train.strategy=deepspeed", "train.zero_stage=1"],
    "zero2": ["train.strategy=deepspeed", "train.zero_stage=2"],
    "zero3": ["train.strategy=deepspeed", "train.zero_stage=3"],
}
MODEL = ["model.d_model=128", "model.n_layers=2", "model.n_heads=4", "data.batch_tokens=1024"]


def _worker(args: argparse.Namespace) -> None:
    """One rank of one run: `fit` with a step timer; rank 0 writes the per-step times."""
    import lightning as L

    from pipeline.config import load_config
    from pipeline.training.trainer import fit

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.wall: list[float] = []
            self.cpu: list[float] = []

        def on_train_batch_start(self, trainer: L.Trainer, *_: Any) -> None:
            self._start = (time.perf_counter(), time.process_time())

        def on_train_batch_end(self, trainer: L.Trainer, *_: Any) -> None:
            self.wall.append(time.perf_counter() - self._start[0])
            self.cpu.append(time.process_time() - self._start[1])

        def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if trainer.global_rank == 0:
                params = sum(getattr(p, "ds_numel", p.numel()) for p in pl_module.parameters())
                out = {
                    "wall_s": self.wall,
                    "cpu_s": self.cpu,
                    "params": params,
                    "world_size": trainer.world_size,
                }
                Path(args.out).write_text(json.dumps(out))

    cfg = load_config(args.config, args.overrides)
    fit(cfg, resume="never", extra_callbacks=[StepTimer()])


def _run(name: str, data_dir: Path, work: Path, steps: int) -> dict[str, Any]:
    out = work / f"{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", f"--out={out}"]
    cmd += [f"--config={ROOT}/configs/tiny/base.yaml", f"--config={ROOT}/configs/tiny/transformer.yaml"]
    cmd += [f"data.dir={data_dir}", f"run_dir={work / name}", "train.devices=2", f"train.max_steps={steps}"]
    cmd += [
        f"train.val_every={steps}",
        "train.bleu_samples=0",
        "train.val_batches=1",
        *MODEL,
        *STRATEGIES[name],
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache/torch_extensions"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_zero", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--steps", type=int, default=15, help="training steps per strategy")
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the median")
    parser.add_argument("--work", default=str(ROOT / "runs/bench-zero"), help="run directories and data")
    parser.add_argument("--out", default=str(RESULTS / "zero_cpu.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0

    import deepspeed
    import lightning
    import torch

    from pipeline.config import load_config
    from pipeline.data.prepare.build import ensure_prepared

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    d = load_config([ROOT / "configs/tiny/base.yaml", ROOT / "configs/tiny/transformer.yaml"]).data
    data_dir = work / "data"
    ensure_prepared(data_dir, corpus=d.corpus, vocab_size=d.vocab_size, max_len=d.max_len, limit=d.limit)
    load_start = list(os.getloadavg())
    results: dict[str, Any] = {}
    for name in STRATEGIES:
        raw = _run(name, data_dir, work, args.steps)
        wall, cpu = raw["wall_s"][args.warmup :], raw["cpu_s"][args.warmup :]
        results[name] = {
            "median_step_wall_ms": round(1000 * statistics.median(wall), 2),
            "median_step_cpu_ms": round(1000 * statistics.median(cpu), 2),
            "timed_steps": len(wall),
            "params": raw["params"],
        }
        print(f"{name:6s} {results[name]['median_step_wall_ms']:9.1f} ms/step wall  "
              f"{results[name]['median_step_cpu_ms']:9.1f} ms/step cpu (rank 0)", flush=True)  # fmt: skip
    base = results["ddp"]
    for row in results.values():
        row["wall_ratio_vs_ddp"] = round(row["median_step_wall_ms"] / base["median_step_wall_ms"], 3)
        row["cpu_ratio_vs_ddp"] = round(row["median_step_cpu_ms"] / base["median_step_cpu_ms"], 3)
    report = {
        "benchmark": "ZeRO-1/2/3 vs DDP step time, same model, 2 ranks",
        "device": "cpu (gloo); no GPU was available to this task, so there are no GPU numbers here",
        "model": {"arch": "transformer", "overrides": MODEL},
        "steps": args.steps,
        "warmup_steps_dropped": args.warmup,
        "results": results,
        "machine": {
            "cpu_cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "deepspeed": deepspeed.__version__,
            "omp_num_threads_per_rank": 1,
            "load_average_start": load_start,
            "load_average_end": list(os.getloadavg()),
            "note": "2 ranks on a 2-core machine shared with other jobs: wall times include waiting for cores",
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
