"""CPU time per pair of each phase of the streamed preparation (``pipeline/data/prepare/``), single-threaded.

    python -m benchmarks.prepare_profile                 # 50,000 pairs of the bench_prepare corpus
    python -m benchmarks.prepare_profile --pairs 20000

``time.process_time`` around each step, with the tokenizers library's threads off (``TOKENIZERS_PARALLELISM=false``)
so that process time is the work itself: reading + cleaning the lines, ``encode_batch`` (the two sides in two calls
and in one), the old per-record ``pickle.dump`` vs the part files (``range_parts.py``), reading parts back, and
writing the tar shards (``shard_writer.write_split``), and the merge's split between rendering samples (in workers)
and appending them (the one serial step, ``merge_split.py``). The sum bounds throughput: a machine with C cores prepares at
most C / (CPU seconds per pair) pairs per second. Prints a table and writes JSON to ``--out`` if given.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # before tokenizers runs: process time = one thread's work


def profile(n_pairs: int, work: Path) -> dict:
    from rich.progress import Progress

    from benchmarks.bench_prepare import write_corpus
    from pipeline.data.prepare.encode import CHUNK
    from pipeline.data.prepare.merge_split import render_unit, write_units
    from pipeline.data.prepare.plan import pairs_of
    from pipeline.data.prepare.range_parts import PartBuffer, load_part
    from pipeline.data.prepare.shard_writer import write_split
    from pipeline.data.sources.corpus import CorpusSource
    from pipeline.data.sources.readers import Malformed
    from pipeline.data.tokenizer import train_tokenizer

    src, tgt = write_corpus(work, n_pairs)
    source = CorpusSource(src=src, tgt=tgt)
    cost: dict[str, float] = {}

    def timed(name: str, fn):  # noqa: ANN001, ANN202
        t0 = time.process_time()
        out = fn()
        cost[name] = (time.process_time() - t0) / n_pairs * 1e6  # us per pair
        return out

    pairs = timed("read + clean", lambda: list(pairs_of(source, Malformed())))
    tokenizer = train_tokenizer((x for _, s, t in pairs[:20_000] for x in (s, t)), 8000)
    chunks = [pairs[i : i + CHUNK] for i in range(0, len(pairs), CHUNK)]

    def two_calls() -> list:
        return [(tokenizer.encode_batch([s for _, s, _ in c]), tokenizer.encode_batch([t for _, _, t in c]))
                for c in chunks]  # fmt: skip

    def one_call() -> list:
        return [tokenizer.encode_batch([s for _, s, _ in c] + [t for _, _, t in c]) for c in chunks]

    timed("encode_batch, src and tgt in 2 calls", two_calls)
    encoded = timed("encode_batch, src+tgt in 1 call", one_call)
    records = [
        (k, s, t, ids[j], ids[len(c) + j]) for c, ids in zip(chunks, encoded, strict=True)
        for j, (k, s, t) in enumerate(c)
    ]  # fmt: skip
    timed(
        "pickle.dump per record (before)", lambda: [pickle.dump(r, io.BytesIO(), protocol=5) for r in records]
    )
    part = work / "profile-part.npy"

    def save_parts() -> None:
        for start in range(0, len(records), CHUNK):
            buf = PartBuffer()
            for r in islice(records, start, start + CHUNK):
                buf.add(*r)
            buf.save(part)

    timed("part files: add + save", save_parts)
    buf = PartBuffer()
    for r in records:
        buf.add(*r)
    buf.save(part)
    loaded = timed("part files: load", lambda: load_part(part))
    shards = Path(tempfile.mkdtemp(dir=work))
    with Progress(transient=True) as progress:
        timed("write tar shards + sha256", lambda: write_split(
            [loaded], n_pairs, shards, "train", 128, 2000, "drop", None, progress))  # fmt: skip
    timed(
        "merge: load + render samples (workers)",
        lambda: render_unit(([part], "0-bucket-0"), 128, "drop", work / "profile-unit.bin"),
    )
    shards = Path(tempfile.mkdtemp(dir=work))
    with Progress(
        transient=True
    ) as progress:  # process_time: this process only, the workers' rendering not counted
        timed("merge: append + sha256 (serial)", lambda: write_units(
            [([part], "0-bucket-0")], n_pairs, shards, "train", 128, 2000, "drop", None, progress, workers=2))  # fmt: skip
    lines_per_pair = 2
    pipeline_cost = sum(cost[k] for k in ("read + clean", "encode_batch, src+tgt in 1 call", "part files: add + save",
                                            "merge: load + render samples (workers)",
                                            "merge: append + sha256 (serial)"))  # fmt: skip
    serial = (
        cost["read + clean"] + cost["merge: append + sha256 (serial)"]
    )  # the plan's pass, the merge's appending
    return {
        "pairs": n_pairs,
        "cpu_us_per_pair": {k: round(v, 1) for k, v in cost.items()},
        "encode_us_per_line": round(cost["encode_batch, src+tgt in 1 call"] / lines_per_pair, 1),
        "total_us_per_pair": round(pipeline_cost, 1),
        "serial_us_per_pair": round(serial, 1),
        "ceiling_pairs_per_s_per_core": round(1e6 / pipeline_cost),
        "encode_only_pairs_per_s_per_core": round(1e6 / cost["encode_batch, src+tgt in 1 call"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.prepare_profile", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--pairs", type=int, default=50_000)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-prepare"))
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    result = {"command": "python -m benchmarks.prepare_profile " + " ".join(argv or sys.argv[1:]),
              "cpu_count": os.cpu_count(), **profile(args.pairs, args.work.resolve())}  # fmt: skip
    for name, us in result["cpu_us_per_pair"].items():
        print(f"{name:40} {us:8.1f} us CPU / pair")
    print(f"{'serial (plan pass, merge appending)':40} {result['serial_us_per_pair']:8.1f} us CPU / pair")
    print(f"{'total (read, 1-call encode, parts, merge)':40} {result['total_us_per_pair']:8.1f} us CPU / pair "
          f"-> at most {result['ceiling_pairs_per_s_per_core']:,} pairs/s per core")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
