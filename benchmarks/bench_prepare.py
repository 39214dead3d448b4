"""Preparation throughput and peak memory: streaming (``pipeline/data/prepare/``) vs the in-memory path, same run.

    python -m benchmarks.bench_prepare                         # 100k, 400k, 1.6M pairs (long: the in-memory path
                                                               # needs ~15 min at 1.6M on 2 cores)
    python -m benchmarks.bench_prepare --pairs 100000 400000   # what fits on a shared machine
    python -m benchmarks.bench_prepare --quick                 # 2,000 pairs, a smoke test

The input is synthetic parallel text built from the embedded corpus (English WEB -> French Segond verse pairs,
repeated in a seeded random order until N pairs), written once as line-aligned files, then prepared with
``--vocab-size 8000 --max-len 128`` by each path in its own subprocess, so the peak RSS
(``ru_maxrss`` of that process) is its own. The reference ("old") is the old code itself: the package at
``REFERENCE_COMMIT``, extracted with ``git archive`` (load all pairs, shuffle, BPE on all train pairs, tarfile).
The streaming path runs twice: ``--workers 1`` and ``--workers <cpu count>`` (``streaming_workers``; its CPU
time includes the worker processes'). Also measured: verifying every shard's sha256
up front (``verify_prepared(hash_shards=True)``) against one pass of the loader over the train split, to decide
whether to hash at start or per shard as opened. Writes ``<out>/prepare_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (100_000, 400_000, 1_600_000)
REFERENCE_COMMIT = "514eee0"  # the last commit with the in-memory preparation path

_CHILD = """
import json, resource, sys, time
from pipeline.data.prepare.build import prepare
src, tgt, out, stream, workers = sys.argv[1:6]
t0 = time.perf_counter()
kw = {} if stream == "old" else {"stream": stream == "1"}  # the old code has no `stream` argument
kw.update({"workers": int(workers)} if int(workers) > 1 else {})  # nor `workers`
m = prepare(f"parallel:{src}|{tgt}", out, vocab_size=8000, max_len=128, force=True, **kw)
wall = time.perf_counter() - t0
use, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall_s": wall, "peak_rss_mb": use.ru_maxrss / 1024, "worker_peak_rss_mb": kids.ru_maxrss / 1024,
                  "cpu_s": use.ru_utime + use.ru_stime + kids.ru_utime + kids.ru_stime,
                  "samples": {s: m["splits"][s]["samples"] for s in m["splits"]}}))
"""


def write_corpus(root: Path, n_pairs: int, seed: int = 0) -> tuple[Path, Path]:
    """N line-aligned pairs: the bible's verse pairs repeated in seeded random order."""
    from pipeline.data.sources.corpus import CorpusSource, load_splits

    src, tgt = root / f"synthetic-{n_pairs}.en", root / f"synthetic-{n_pairs}.fr"
    if src.is_file() and tgt.is_file():
        return src, tgt
    pairs = [(s, t) for split in load_splits(CorpusSource(bible="bible:4-l")).values() for _, s, t in split]
    rng = random.Random(seed)
    with src.open("w") as fs, tgt.open("w") as ft:
        written = 0
        while written < n_pairs:
            rng.shuffle(pairs)
            for s, t in pairs[: n_pairs - written]:
                fs.write(s + "\n")
                ft.write(t + "\n")
            written += min(len(pairs), n_pairs - written)
    return src, tgt


def old_code(commit: str, work: Path) -> Path:
    """The ``pipeline`` package as of ``commit`` (in-memory preparation), from git, for the reference run."""
    root = work / f"pipeline-{commit}"
    if not (root / "pipeline").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        repo = Path(__file__).resolve().parents[1]
        archive = subprocess.run(["git", "-C", str(repo), "archive", commit, "pipeline"], capture_output=True,
                                 check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


def run_one(src: Path, tgt: Path, out: Path, mode: str, pythonpath: Path | None = None,
            workers: int = 1) -> dict[str, Any]:  # fmt: skip
    """mode: "old" (the extracted old package), "1" (streaming) or "0" (this code's in-memory path); ``workers``:
    the streaming path's encoding processes (its CPU time counts the children's: RUSAGE_CHILDREN is added)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(tgt), str(out), mode, str(workers)],
                          capture_output=True, text=True, env=env, check=False, cwd=pythonpath)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"prepare ({mode}) failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def verify_cost(data_dir: Path) -> dict[str, Any]:
    """Seconds to hash every shard up front vs one loader pass over train (which hashes each shard it opens)."""
    from pipeline.data.stream.loader import build_loader
    from pipeline.data.stream.verify import verify_prepared

    t0 = time.perf_counter()
    verify_prepared(data_dir)
    cheap = time.perf_counter() - t0
    t0 = time.perf_counter()
    verify_prepared(data_dir, hash_shards=True)
    full = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = sum(1 for _ in build_loader(data_dir, "train", batch_tokens=8192))
    epoch = time.perf_counter() - t0
    mb = sum(p.stat().st_size for p in data_dir.rglob("*.tar")) / 2**20
    return {"shards_mb": round(mb, 1), "verify_no_hash_s": round(cheap, 3), "verify_all_hashes_s": round(full, 3),
            "loader_train_pass_s": round(epoch, 2), "loader_batches": n,
            "all_hashes_over_train_pass": round(full / epoch, 4)}  # fmt: skip


def run(sizes: list[int], work: Path, commit: str, log: Any = print, partial: Any = None,
        n_workers: int = os.cpu_count() or 1) -> dict[str, Any]:  # fmt: skip
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    old = old_code(commit, work)
    rows = []
    for n in sizes:
        src, tgt = write_corpus(work, n)
        row: dict[str, Any] = {"pairs": n}
        for name, mode, workers in (
            ("old", "old", 1),
            ("streaming", "1", 1),
            ("streaming_workers", "1", n_workers),
        ):
            res = run_one(
                src, tgt, work / f"prepared-{n}-{name}", mode, old if mode == "old" else None, workers
            )
            res["workers"] = workers
            res["pairs_per_s"] = n / res["wall_s"]
            res["pairs_per_cpu_s"] = n / res["cpu_s"]  # steadier than wall time on a shared machine
            row[name] = res
            log(f"{n:>9,} pairs  {name:<9}  {res['wall_s']:7.1f} s  {res['pairs_per_s']:9,.0f} pairs/s  "
                f"cpu {res['cpu_s']:7.1f} s  peak RSS {res['peak_rss_mb']:7.0f} MB")  # fmt: skip
        row["speedup"] = row["old"]["wall_s"] / row["streaming"]["wall_s"]
        row["workers_speedup"] = row["old"]["wall_s"] / row["streaming_workers"]["wall_s"]
        row["cpu_speedup"] = row["old"]["cpu_s"] / row["streaming"]["cpu_s"]
        row["rss_ratio"] = row["streaming"]["peak_rss_mb"] / row["old"]["peak_rss_mb"]
        rows.append(row)
        if partial is not None:
            partial(rows)
    return {"rows": rows, "verify": verify_cost(work / f"prepared-{sizes[0]}-streaming")}


def run_suite(quick: bool, out: Path, work: Path = Path("runs/bench-prepare")) -> dict[str, Any]:
    """``make bench`` suite 'prepare': all three sizes (2,000 pairs with --quick); also writes <out>/prepare_cpu.json."""
    main((["--quick"] if quick else []) + ["--out", str(out), "--work", str(work)])
    return json.loads((out / ("prepare_cpu_quick.json" if quick else "prepare_cpu.json")).read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_prepare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--pairs", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--quick", action="store_true", help="2,000 pairs only (a smoke test)")
    parser.add_argument(
        "--work", type=Path, default=Path("runs/bench-prepare"), help="scratch dir (corpora, shards)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--reference-commit", default=REFERENCE_COMMIT, help="the old code to compare against"
    )
    args = parser.parse_args(argv)
    sizes = [2_000] if args.quick else args.pairs
    t0 = time.perf_counter()
    result = {
        "command": "python -m benchmarks.bench_prepare "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu_count": os.cpu_count(),
        "note": "wall-clock timings: as quiet as the machine was (see load_average_at_start)",
        "load_average_at_start": list(os.getloadavg()),
        "reference": f"old = the pipeline package at commit {args.reference_commit} (in-memory preparation)",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("prepare_cpu_quick.json" if args.quick else "prepare_cpu.json")

    def partial(rows: list) -> None:  # each finished size is kept even if a later, longer one is cut short
        path.write_text(json.dumps({**result, "rows": rows, "partial": True}, indent=1) + "\n")

    result.update(run(sizes, args.work, args.reference_commit, partial=partial))
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
