"""Before/after of the memory tasks' block storage: the loader's seconds a batch at the recall study's shape, with
the data code before the change (`--before`, default 4bfeac9: one tar sample of seven members per sequence) and
now (blocks of up to 256 sequences a sample), in the same run.

    python -m benchmarks.loader_blocks --out benchmarks/results/speed-check     # ~1 min on a quiet core
    python -m benchmarks.loader_blocks --quick --out /tmp/lb                    # seconds: the smoke test

Why the loader alone: the change is in `pipeline/data` only, so a training step differs by the loader's time and
nothing else; with `data.num_workers: 0` (configs/tiny, every memory-task sweep) the loader runs in the training
process between steps, so a step's wall time is the loader's time a batch plus the model's step (timed by the
mqar suite on fixed batches: `--mqar-json` adds the implied pipeline tokens/s before and after).

How: the "before" code is this checkout's `pipeline` package with `pipeline/data` replaced by `--before`'s (from
`git show`), copied into a temporary directory; every other file is the same. Each side runs in its own Python
process (`PYTHONPATH` = its root; the child reports which `pipeline` it imported and the data format version it
wrote) that generates the task into its own directory (`data.task: mqar`, V 64, L 32, N 4, 20,000 training
sequences, zeros filler, as configs/sweeps/recall-cpu.yaml but fewer sequences), builds `build_loader` for the
train split (8,192 tokens a batch = 256 sequences, bucket 4,096, one process, infinite) and times `--batches`
batches after the first (the first reads and checks a whole shard: `first_batch_s`, apart). Rounds alternate
which side goes first. Clock: process CPU time (the headline, as in the other suites; the machine may be shared)
and wall time, per batch.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHAPE = {"vocab_size": 64, "seq_len": 32, "n_pairs": 4, "rows": 256, "bucket": 4096, "train_examples": 20000}
# the bucket (shuffle buffer) well below the split, so that timed batches read sequences from the shard
# (the mqar suite's quick shape, so that --quick exercises --mqar-json too)
QUICK = {"vocab_size": 32, "seq_len": 16, "n_pairs": 2, "rows": 16, "bucket": 32, "train_examples": 1000}


def child_config(data_dir: str, shape: dict[str, int]) -> Any:
    """The run config whose data the child prepares and reads (same code at both sides: pipeline/config)."""
    from pipeline.config import RunConfig, config_from_dict, to_dict

    cfg = RunConfig(name="loader-blocks", model={"arch": "lstm", "d_model": 8, "n_layers": 1})
    d = cfg.data
    d.dir, d.task, d.num_workers = data_dir, "mqar", 0
    d.batch_tokens, d.bucket_size = shape["rows"] * shape["seq_len"], shape["bucket"]
    d.mqar.vocab_size, d.mqar.n_pairs, d.mqar.seq_len, d.mqar.filler = (
        shape["vocab_size"], shape["n_pairs"], shape["seq_len"], "zeros")  # fmt: skip
    d.memory.train_examples, d.memory.valid_examples, d.memory.test_examples = shape["train_examples"], 64, 64
    return config_from_dict(to_dict(cfg), "loader_blocks")


def child(mode: str, data_dir: str, shape: dict[str, int], batches: int) -> dict[str, Any]:
    """In the side's own process: prepare the task (`prepare`) or time `batches` batches after the first (`time`)."""
    import pipeline
    from pipeline.data.manifest import FORMAT_VERSION
    from pipeline.training.run_data import loader_max_len, prepare_run_data

    cfg = child_config(data_dir, shape)
    out: dict[str, Any] = {"pipeline": str(Path(pipeline.__file__).parent), "format_version": FORMAT_VERSION}
    t0 = time.perf_counter()
    prepare_run_data(cfg.data)
    if mode == "prepare":
        return out | {"prepare_s": time.perf_counter() - t0}
    from pipeline.data.stream.loader import build_loader

    d = cfg.data
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    stream = iter(build_loader(d.dir, "train", batch_tokens=d.batch_tokens, max_len=loader_max_len(d), seed=1,
                               infinite=True, bucket_size=d.bucket_size))  # fmt: skip
    first = next(stream)
    first_wall, first_cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    tokens, wall, cpu = 0, [], []
    for _ in range(batches):
        w, c = time.perf_counter(), time.process_time()
        batch = next(stream)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
        tokens += int(batch["n_tokens"])
    return out | {"rows": int(first["tgt_in"].shape[0]), "first_batch_s": {"wall": first_wall, "cpu": first_cpu},
                  "batch_s": {"wall": wall, "cpu": cpu}, "tokens": tokens}  # fmt: skip


def before_tree(rev: str, dest: Path) -> Path:
    """This checkout's `pipeline` with `pipeline/data` as it was at `rev`, under `dest` (returned: the root)."""
    shutil.copytree(ROOT / "pipeline", dest / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    names = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", rev, "pipeline/data"],
                           check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    if not names:
        raise SystemExit(f"--before {rev}: no pipeline/data at that revision")
    shutil.rmtree(dest / "pipeline" / "data")
    for name in names:
        blob = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:{name}"], check=True, capture_output=True
        ).stdout
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(blob)
    return dest


def format_version_at(root: Path) -> int:
    """The shard format a tree's `pipeline/data/manifest.py` writes, read from its text: no child process needed
    to refuse a `--before` that is not older than now."""
    found = re.search(r"^FORMAT_VERSION = (\d+)$", (root / "pipeline/data/manifest.py").read_text(), re.M)
    if found is None:
        raise SystemExit(f"{root / 'pipeline/data/manifest.py'}: no FORMAT_VERSION line")
    return int(found.group(1))


def run_child(root: Path, mode: str, data_dir: Path, shape: dict[str, int], batches: int, cwd: Path) -> dict:
    """This file as a script in a fresh process whose only `pipeline` is `root`'s."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(root)}
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, __file__, "--child", mode, "--data-dir", str(data_dir), "--shape", json.dumps(shape),
           "--batches", str(batches)]  # fmt: skip
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"loader_blocks: the {mode} child for {root} failed:\n{done.stderr[-3000:]}")
    res = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(res["pipeline"]).resolve() != (root / "pipeline").resolve():
        raise SystemExit(f"loader_blocks: the child imported {res['pipeline']}, not {root / 'pipeline'}")
    return res


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One side's rounds -> median seconds a batch (per clock, over all timed batches), loader tokens/s."""
    out: dict[str, Any] = {"pipeline": runs[0]["pipeline"], "format_version": runs[0]["format_version"],
                           "rows": runs[0]["rows"]}  # fmt: skip
    tokens_per_batch = sum(r["tokens"] for r in runs) / sum(len(r["batch_s"]["cpu"]) for r in runs)
    for clock in ("cpu", "wall"):
        per_batch = [s for r in runs for s in r["batch_s"][clock]]
        out[f"batch_s_{clock}"] = statistics.median(per_batch)
        out[f"mean_batch_s_{clock}"] = statistics.fmean(per_batch)
        out[f"tokens_per_s_{clock}"] = tokens_per_batch / statistics.fmean(per_batch)
        out[f"first_batch_s_{clock}"] = statistics.median(r["first_batch_s"][clock] for r in runs)
    out["tokens_per_batch"] = tokens_per_batch
    return out


def implied_pipeline(sides: dict[str, dict[str, Any]], mqar_json: Path, shape: dict[str, int] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Per architecture of a mqar-suite JSON: tokens/s of a training step plus the loader's mean time a batch,
    before and after (CPU clock), as the pipeline runs with data.num_workers 0. Empty (with a line saying why) where
    the JSON has no mqar rows or they were timed at another task shape than `shape`."""
    suites = json.loads(mqar_json.read_text()).get("suites", {}) if mqar_json.is_file() else {}
    suite = suites.get("mqar") or {"rows": []}
    if not suite["rows"]:
        print(f"loader_blocks: no mqar rows in {mqar_json}: no implied pipeline rate")
        return []
    keys = ("vocab_size", "seq_len", "n_pairs", "rows")
    if shape is not None and any(suite["shape"][k] != shape[k] for k in keys):
        print(
            f"loader_blocks: {mqar_json}'s mqar shape differs from the loader's ({', '.join(keys)}): no implied rate"
        )
        return []
    out = []
    for row in suite["rows"]:
        step, tokens = row["pipeline_step_s"]["median"], row["tokens_per_batch"]
        rates = {side: tokens / (step + s["mean_batch_s_cpu"]) for side, s in sides.items()}
        out.append({"arch": row["arch"], "step_s": step, **{f"{k}_tokens_per_s": v for k, v in rates.items()},
                    "speedup": rates["after"] / rates["before"]})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.loader_blocks", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--before", default="4bfeac9", help="the revision whose pipeline/data is 'before'")
    p.add_argument("--batches", type=int, default=None, help="timed batches a round (default 30; --quick 5)")
    p.add_argument(
        "--rounds", type=int, default=None, help="rounds, alternating which side first (3; --quick 1)"
    )
    p.add_argument("--quick", action="store_true", help="a small task and few batches: the smoke test")
    p.add_argument("--out", default="benchmarks/results", help="directory for loader_blocks_cpu.json")
    p.add_argument(
        "--mqar-json", default=None, help="a benchmarks.run JSON with the mqar suite: implied tokens/s"
    )
    p.add_argument("--child", choices=("prepare", "time"), help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    p.add_argument("--shape", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.data_dir, json.loads(args.shape), args.batches or 0)))
        return 0
    shape = QUICK if args.quick else SHAPE
    batches, rounds = args.batches or (5 if args.quick else 30), args.rounds or (1 if args.quick else 3)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="loader-blocks-") as tmp:
        roots = {"before": before_tree(args.before, Path(tmp) / "before"), "after": ROOT}
        before_version, now_version = (format_version_at(roots[side]) for side in ("before", "after"))
        if before_version >= now_version:
            raise SystemExit(f"loader_blocks: --before {args.before} writes format {before_version}, "
                             f"not older than now's {now_version}")  # fmt: skip
        prepared = {side: run_child(root, "prepare", Path(tmp) / f"data-{side}", shape, 0, Path(tmp))
                    for side, root in roots.items()}  # fmt: skip
        runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        for r in range(rounds):
            for side in ("before", "after") if r % 2 == 0 else ("after", "before"):
                runs[side].append(
                    run_child(roots[side], "time", Path(tmp) / f"data-{side}", shape, batches, Path(tmp))
                )
    sides = {side: summarize(rs) | {"prepare_s": prepared[side]["prepare_s"]} for side, rs in runs.items()}
    result: dict[str, Any] = {
        "command": "python -m benchmarks.loader_blocks " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "before_rev": args.before, "shape": shape,
        "batches": batches, "rounds": rounds, "load_average_at_start": list(os.getloadavg()),
        "sides": sides, "speedup_cpu": sides["before"]["mean_batch_s_cpu"] / sides["after"]["mean_batch_s_cpu"],
    }  # fmt: skip
    if args.mqar_json:
        result["implied_pipeline"] = implied_pipeline(sides, Path(args.mqar_json), shape)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "loader_blocks_cpu.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    for side, s in sides.items():
        print(f"loader_blocks {side:>6} (format {s['format_version']}): {1e3 * s['mean_batch_s_cpu']:.1f} ms a batch "
              f"of {s['rows']} sequences (CPU; median {1e3 * s['batch_s_cpu']:.1f}, wall mean "
              f"{1e3 * s['mean_batch_s_wall']:.1f}), {s['tokens_per_s_cpu']:,.0f} tokens/s")  # fmt: skip
    for row in result.get("implied_pipeline", []):
        print(f"loader_blocks implied pipeline {row['arch']:>22}: {row['before_tokens_per_s']:,.0f} -> "
              f"{row['after_tokens_per_s']:,.0f} tokens/s ({row['speedup']:.2f}x)")  # fmt: skip
    print(f"wrote {path} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
