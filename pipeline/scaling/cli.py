"""`pipeline scaling fit SWEEP_DIR` and `pipeline scaling report SWEEP_DIR`: the command-line face of the fitter.

`fit` writes `fit.json` and prints one line per architecture and law; `report` also draws the plots and writes
`report.md`; both write into `--out` (default: SWEEP_DIR). Both read every `SWEEP_DIR/<run>/result.json` and skip run
directories without one (unfinished or failed runs), saying how many.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="directory holding <run>/result.json records")
    parser.add_argument(
        "--n-boot", type=int, default=400, help="bootstrap resamples of runs per fit (default 400)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--unigram-entropy",
        type=float,
        metavar="NATS",
        help="unigram entropy of the validation targets, for records that do not carry their own: runs whose "
        "final loss is at or above it learned nothing and are left out of the fits",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="where fit.json (and report.md, plots) go (default: SWEEP_DIR)"
    )


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)


def _ci(fit: dict[str, Any], key: str) -> str:
    value, ci = fit["params"].get(key), fit["ci95"].get(key)
    text = "n/a" if value is None else f"{value:.3g}"
    return text + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci and None not in ci else "")


def summary_lines(result: dict[str, Any]) -> list[str]:
    """One line per architecture and law of a `fit.json` dict, e.g. `lstm  L_N  alpha=0.12 [0.08, 0.16]`."""
    lines = [
        f"{result['sweep_dir']}: {result['n_runs']} runs, {len(result['skipped_runs'])} skipped (no record)"
    ]
    for arch, a in result["archs"].items():
        for law, fit in a["fits"].items():
            if fit["underdetermined"]:
                lines.append(f"  {arch:14} {law:10} underdetermined: {fit['reason']}")
                continue
            keys = ("alpha", "beta", "E") if fit["form"] == "chinchilla" else ("alpha",)
            lines.append(f"  {arch:14} {law:10} " + "  ".join(f"{k}={_ci(fit, k)}" for k in keys))
    return lines


def run_fit_command(args: argparse.Namespace) -> int:
    from pipeline.scaling.report import run_fit

    try:
        result = run_fit(
            args.sweep_dir, args.n_boot, args.seed, out_dir=args.out, unigram_entropy=args.unigram_entropy
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"pipeline scaling fit: error: {err}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(result)))
    print(f"wrote {args.out or args.sweep_dir}/fit.json")
    return 0


def run_report_command(args: argparse.Namespace) -> int:
    from pipeline.scaling.report_markdown import write_report

    try:
        path = write_report(
            args.sweep_dir, args.out, n_boot=args.n_boot, seed=args.seed, unigram_entropy=args.unigram_entropy
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"pipeline scaling report: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} (and its plots), {path.parent}/fit.json")
    return 0
