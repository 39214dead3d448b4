"""`make bench` = `python -m benchmarks.run`: run the suites, write JSON, print a table, write SUMMARY.md.

    python -m benchmarks.run                      # CPU, fp32, 1 thread, ~6-10 min on 2 cores: the committed results
    python -m benchmarks.run --quick              # tiny sizes, < 2 min, writes to runs/bench-quick (smoke test)
    python -m benchmarks.run --device cuda --precision bf16-mixed   # GPU: larger sizes, cuDNN LSTM, MFU vs bf16 peak
    python -m benchmarks.run --suites mqar --mqar d_model=64 rows=512  # one MQAR step per arch at another shape
    python -m benchmarks.run --suites roofline --roofline-sizes tiny mqar --roofline-archs lstm transformer \
        --roofline-compile-cap 180       # a bounded roofline (see benchmarks/speed_check.sh)

One JSON per device/precision (`<out>/<tag>.json`); SUMMARY.md is rebuilt from every JSON in `<out>`, so a GPU run
adds its section next to the CPU one instead of replacing it. The JSON is rewritten after every suite and, in the
roofline and mqar suites, after every row (`"complete": false` until the end), so a run stopped early keeps what it
measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

SUITES = ("throughput", "seq_len", "loader", "fixes", "decode", "cost", "prepare", "roofline", "mqar")
# not in --quick by default: old-vs-new preparation runs subprocesses; the roofline compiles every model (minutes)
NOT_QUICK = ("prepare", "roofline")
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and few repeats (< 2 min): a smoke test"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("32-true", "bf16-mixed"), default=None,
                        help="default: 32-true on CPU, bf16-mixed on CUDA")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (torch.set_num_threads); 1 keeps a shared 2-core box stable")  # fmt: skip
    parser.add_argument("--data-dir", default=None,
                        help="prepared data (default: configs/demo/base.yaml's data.dir; configs/tiny with --quick)")  # fmt: skip
    parser.add_argument(
        "--out", default=None, help=f"results directory (default: {RESULTS}; runs/bench-quick with --quick)"
    )
    parser.add_argument("--suites", nargs="+", choices=SUITES, default=None,
                        help="default: all (with --quick: all but 'prepare' and 'roofline', see NOT_QUICK)")  # fmt: skip
    parser.add_argument(
        "--sizes", nargs="+", default=None, help="throughput sizes (default depends on the device)"
    )
    parser.add_argument("--mqar", nargs="+", default=[], metavar="KEY=VALUE",
                        help="the mqar suite's shape over its default (or --quick's), e.g. d_model=64 rows=512; "
                        "keys: benchmarks/bench_mqar.py MqarShape")  # fmt: skip
    add_roofline_args(parser)
    return parser.parse_args(argv)


def add_roofline_args(parser: argparse.ArgumentParser) -> None:
    """`--roofline-*`: what the roofline suite measures (benchmarks/roofline.py `RooflineOptions`)."""
    from benchmarks.roofline_names import ARCHS, SIZE_CHOICES

    g = parser.add_argument_group("roofline suite")
    g.add_argument("--roofline-sizes", nargs="+", choices=SIZE_CHOICES, default=None,
                   help="sizes (recall = both recall points; default tiny demo recall mqar, --quick: its own)")  # fmt: skip
    g.add_argument("--roofline-archs", nargs="+", choices=ARCHS, default=None, help="default: all")
    g.add_argument("--roofline-compile", nargs="+", choices=(*ARCHS, "all"), default=[], metavar="ARCH",
                   help="compile these even where benchmarks/roofline_compile.py NOT_COMPILED says not to "
                   "(default: lstm_no_cell_residual and lstm_newton are timed eager only)")  # fmt: skip
    g.add_argument("--roofline-compile-cap", type=float, default=None, metavar="SECONDS",
                   help="stop a model's compile after this many wall seconds and record it as not compiled")  # fmt: skip
    g.add_argument("--roofline-recompile", action="store_true",
                   help="also time a fresh copy's compile with the compiler's caches warm (a sweep's later runs)")  # fmt: skip
    g.add_argument("--roofline-no-fixes", action="store_true",
                   help="skip re-timing fixes 2 and 3 (minLSTM's scan, fused AdamW) at the end")  # fmt: skip
    g.add_argument("--roofline-backend", default="inductor",
                   help="torch.compile backend (eager: dynamo only, seconds; for tests)")  # fmt: skip


def roofline_options(args: argparse.Namespace) -> Any:
    from benchmarks.roofline import RooflineOptions

    return RooflineOptions(sizes=tuple(args.roofline_sizes or ()), archs=tuple(args.roofline_archs or ()),
                           compile_archs=tuple(args.roofline_compile), compile_cap_s=args.roofline_compile_cap,
                           recompile=args.roofline_recompile, fixes=not args.roofline_no_fixes,
                           backend=args.roofline_backend)  # fmt: skip


def prepare_data(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """Prepare (once) the data of configs/demo (or configs/tiny with --quick) -> (data dir, vocab_size/max_len)."""
    from pipeline.config import load_config
    from pipeline.data.prepare.build import ensure_prepared

    configs = Path("configs/tiny" if args.quick else "configs/demo")
    cfg = load_config([configs / "base.yaml", configs / "lstm.yaml"])
    d = cfg.data
    data_dir = args.data_dir or d.dir
    manifest = ensure_prepared(data_dir, corpus=d.corpus, vocab_size=d.vocab_size, max_len=d.max_len,
                               limit=d.limit or None)  # fmt: skip
    return data_dir, {"vocab_size": manifest["vocab_size"], "max_len": manifest["max_len"]}


def result_tag(machine: dict[str, Any]) -> str:
    name = machine["gpu"]["name"] if machine["gpu"] else "cpu"
    return re.sub(r"[^a-z0-9]+", "-", f"{name}-{machine['precision']}".lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.suites = args.suites or [s for s in SUITES if not (args.quick and s in NOT_QUICK)]
    if args.threads < 1:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    if args.roofline_compile_cap is not None and args.roofline_compile_cap <= 0:
        print(
            f"error: --roofline-compile-cap must be > 0 seconds, got {args.roofline_compile_cap:g}",
            file=sys.stderr,
        )
        return 2
    # Before torch spins up its pool; build_trainer also leaves the thread count alone when OMP_NUM_THREADS is set.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    from benchmarks.bench_mqar import parse_shape

    try:
        mqar_shape = parse_shape(args.mqar, args.quick)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from benchmarks import bench_cost, bench_decode, fixes, loader, seq_len, throughput
    from benchmarks.common import BenchSettings, machine_info
    from benchmarks.summary import print_table, write_summary

    precision = args.precision or ("bf16-mixed" if args.device == "cuda" else "32-true")
    data_dir, data = prepare_data(args)
    settings = BenchSettings(device=args.device, precision=precision, threads=args.threads, quick=args.quick,
                             data_dir=data_dir, sizes=args.sizes or [])  # fmt: skip
    out = Path(args.out or ("runs/bench-quick" if args.quick else RESULTS))
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info(settings)
    command = "python -m benchmarks.run" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:])
    )
    result: dict[str, Any] = {
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine,
        "settings": asdict(settings) | {"data": data},
        "suites": {},
        "suite_wall_s": {},
        "complete": False,
    }
    path = out / f"{result_tag(machine)}.json"
    started = time.perf_counter()

    def save(suite: str | None = None, partial: dict[str, Any] | None = None) -> None:
        """Write the JSON as it stands (with `partial`, the running suite's rows so far)."""
        if suite is not None:
            result["suites"][suite] = partial
        result["wall_s"] = round(time.perf_counter() - started, 1)
        path.write_text(json.dumps(result, indent=1) + "\n")

    for suite in args.suites:
        t0 = time.perf_counter()
        if suite == "throughput":
            result["suites"]["throughput"] = throughput.run(settings, data)
        elif suite == "seq_len":
            result["suites"]["seq_len"] = seq_len.run(settings)
        elif suite == "cost":  # CPU only; bench_cost.py also writes <out>/cost_cpu.json
            if args.device == "cpu":
                result["suites"]["cost"] = bench_cost.run_suite(args.quick, out)
        elif suite == "loader":
            result["suites"]["loader"] = loader.run(settings, data, result["suites"].get("throughput"))
        elif suite == "prepare":  # old vs streaming preparation; also written alone as <out>/prepare_cpu.json
            from benchmarks import bench_prepare

            result["suites"]["prepare"] = bench_prepare.run_suite(args.quick, out)
        elif suite == "roofline":  # GEMM limit; eager vs compiled FLOP/s (benchmarks/roofline.py)
            from benchmarks import roofline

            result["suites"]["roofline"] = roofline.run(settings, data, out, roofline_options(args),
                                                        on_update=lambda part: save("roofline", part))  # fmt: skip
        elif suite == "mqar":  # one MQAR step per architecture, pipeline vs plain (benchmarks/bench_mqar.py)
            from benchmarks import bench_mqar

            result["suites"]["mqar"] = bench_mqar.run(
                settings, mqar_shape, on_update=lambda part: save("mqar", part)
            )
        elif suite == "decode":  # also written alone as <out>/decode_<device>.json
            result["suites"]["decode"] = bench_decode.run(settings, out)
        else:
            result["suites"]["fixes"] = fixes.run(settings, data)
        result["suite_wall_s"][suite] = round(time.perf_counter() - t0, 1)
        save()
    result["complete"] = True
    save()
    print_table(result)
    summary = write_summary(out)
    print(f"wrote {path} and {summary} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
