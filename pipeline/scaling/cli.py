"""The four `pipeline scaling` commands: their argument parsers and run functions.

`fit SWEEP_DIR` writes `fit.json` and prints one line per architecture and law; `report SWEEP_DIR` writes the same
`fit.json` plus the figures and `report.md`; both write into `--out` (default: SWEEP_DIR). Both read every
`SWEEP_DIR/<run>/result.json` and skip run directories without one (unfinished or failed runs), saying how many.
`compare BASELINE_DIR SWEEP_DIR` prints the points two sweeps share (`tools.sweep_compare`); `coverage SWEEP_DIR A B`
simulates the report's L_A / L_B interval on copies of the sweep (`tools.coverage`). Everything heavy is imported
inside the run functions, so `pipeline --help` loads none of it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sweep_dir", metavar="SWEEP_DIR|RUN_DIR", nargs="+",
        help="a sweep directory (holding <run>/result.json records), or run directories (each with its result.json)",
    )  # fmt: skip
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
    parser.add_argument(
        "--threshold", type=float, default=0.9,
        help="memory tasks: the accuracy N* is the crossing of, in (0, 1) (default 0.9)",
    )  # fmt: skip


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    subset = parser.add_mutually_exclusive_group()
    subset.add_argument(
        "--tokens-after", metavar="REGEX",
        help="also report each run's loss on the tokens that follow a token whose text (decoded with the run's "
        "tokenizer.json, stripped) matches REGEX in full, e.g. '#'; with CIs, against its loss on all tokens",
    )  # fmt: skip
    subset.add_argument(
        "--token-ids", metavar="IDS", help="the same for the target tokens with these ids (1,2,3)"
    )
    subset.add_argument(
        "--token-mask", metavar="NAME",
        help="the same for a mask of the per-token file: 'scored' (a memory task's answer positions)",
    )  # fmt: skip


def _token_selector(args: argparse.Namespace) -> Any:
    """The token subset the report options name, or None; a bad --token-ids is a ValueError naming it."""
    from pipeline.scaling.analyses.token_subset import TokenSelector

    after, ids, mask = (getattr(args, k, None) for k in ("tokens_after", "token_ids", "token_mask"))
    if after is None and ids is None and mask is None:
        return None
    if ids is not None:
        try:
            ids = tuple(int(x) for x in ids.split(",") if x.strip())
        except ValueError as err:
            raise ValueError(
                f"--token-ids {args.token_ids!r}: expected integers separated by commas"
            ) from err
    return TokenSelector(tokens_after=after, token_ids=ids, mask=mask)


def _ci(fit: dict[str, Any], key: str) -> str:
    value, ci = fit["params"].get(key), fit["ci95"].get(key)
    text = "n/a" if value is None else f"{value:.3g}"
    return text + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci and None not in ci else "")


def summary_lines(result: dict[str, Any]) -> list[str]:
    """One line per architecture and law of a `fit.json` dict, e.g. `lstm  L_N  alpha=0.12 [0.08, 0.16]`."""
    lines = [
        f"{result['sweep_dir']}: {result['n_runs']} runs, {len(result['skipped_runs'])} skipped (no record)"
    ]
    if "text_fits_skipped" in result:
        lines.append(f"  text-task laws skipped: {result['text_fits_skipped']}")
    for arch, a in result["archs"].items():
        for law, fit in a["fits"].items():
            if fit["underdetermined"]:
                lines.append(f"  {arch:14} {law:10} underdetermined: {fit['reason']}")
                continue
            keys = ("alpha", "beta", "E") if fit["form"] == "chinchilla" else ("alpha",)
            lines.append(f"  {arch:14} {law:10} " + "  ".join(f"{k}={_ci(fit, k)}" for k in keys))
    for arch, a in result.get("capacity", {}).get("archs", {}).items():
        stars = [f"d={d}: N* {_bound(w)}" for d, w in a["widths"].items()]
        gamma = a["law"]["gamma"]
        lines.append(f"  {arch:14} capacity   " + "; ".join(stars)
                     + ("" if gamma is None else f"; gamma={gamma:.3g}"))  # fmt: skip
    return lines


def _bound(w: dict[str, Any]) -> str:
    sign = {"lower_bound": ">= ", "upper_bound": "< "}.get(w["kind"], "")
    return f"{sign}{w['n_star']:.3g}"


MIN_BOOT = 10  # fewer bootstrap resamples give no usable interval (the tests' fits use 20)


def _boot_problem(args: argparse.Namespace) -> str | None:
    """Why `--n-boot` cannot be used, or None; checked before any file is read (a negative count used to surface
    as "every run learned nothing")."""
    if args.n_boot != 0 and args.n_boot < MIN_BOOT:
        return (
            f"--n-boot must be 0 (point estimates only) or >= {MIN_BOOT} resamples per fit, got {args.n_boot}"
        )
    return None


def _source(paths: list[str]) -> str | list[str]:
    """One path as itself (a sweep or a run directory), several as the run directories they are."""
    return paths[0] if len(paths) == 1 else paths


def run_fit_command(args: argparse.Namespace) -> int:
    from pipeline.scaling.report.fit_json import run_fit

    if problem := _boot_problem(args):
        print(f"pipeline scaling fit: error: {problem}", file=sys.stderr)
        return 2
    try:
        result = run_fit(
            _source(args.sweep_dir),
            args.n_boot,
            args.seed,
            out_dir=args.out,
            unigram_entropy=args.unigram_entropy,
            threshold=getattr(args, "threshold", 0.9),
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"pipeline scaling fit: error: {err}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(result)))
    print(f"wrote {args.out or result['sweep_dir']}/fit.json")
    return 0


def run_report_command(args: argparse.Namespace) -> int:
    from pipeline.scaling.report.write import write_report

    if problem := _boot_problem(args):
        print(f"pipeline scaling report: error: {problem}", file=sys.stderr)
        return 2
    try:
        path = write_report(
            _source(args.sweep_dir),
            args.out,
            n_boot=args.n_boot,
            seed=args.seed,
            unigram_entropy=args.unigram_entropy,
            threshold=getattr(args, "threshold", 0.9),
            tokens=_token_selector(args),
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"pipeline scaling report: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} (and its plots), {path.parent}/fit.json")
    return 0


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "baseline", metavar="BASELINE_DIR", help="the earlier sweep directory (<run>/result.json)"
    )
    parser.add_argument("sweep", metavar="SWEEP_DIR", help="the new sweep directory")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="largest relative difference in trained tokens for two points to match")  # fmt: skip
    parser.add_argument("--out", metavar="FILE", help="also write the tables to this markdown file")


def run_compare_command(args: argparse.Namespace) -> int:
    from pipeline.scaling.records.sweep_dir import load_records
    from pipeline.scaling.tools.sweep_compare import match_shared_points, shared_points_markdown

    if not 0 <= args.tolerance < 1:
        print(
            f"pipeline scaling compare: error: --tolerance must be in [0, 1), got {args.tolerance}",
            file=sys.stderr,
        )
        return 2
    try:
        matches = match_shared_points(load_records(args.baseline), load_records(args.sweep), args.tolerance)
        text = shared_points_markdown(matches, args.baseline, args.sweep)
    except (FileNotFoundError, ValueError) as err:
        print(f"pipeline scaling compare: error: {err}", file=sys.stderr)
        return 2
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


def add_coverage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="directory holding <run>/result.json records")
    parser.add_argument("arch_a", metavar="ARCH_A", help="numerator architecture of the ratio, e.g. lstm")
    parser.add_argument("arch_b", metavar="ARCH_B", help="denominator architecture, e.g. transformer")
    parser.add_argument("--reps", type=int, default=200, help="simulated sweeps (binomial SE ~0.015 at 200)")
    parser.add_argument(
        "--n-boot", type=int, default=200, help="bootstrap resamples per fit, as in the report"
    )
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")
    parser.add_argument("--unigram-entropy", type=float, default=None, metavar="NATS",
                        help="for records that do not carry their own (as in `pipeline scaling report`)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON to write (default: SWEEP_DIR/coverage-ARCH_A-ARCH_B.json)")  # fmt: skip


def run_coverage_command(args: argparse.Namespace) -> int:
    from pipeline.scaling.records.json_file import save_json_atomic
    from pipeline.scaling.records.sweep_dir import load_records
    from pipeline.scaling.tools.coverage import coverage

    if args.reps < 1 or args.n_boot < 20:
        print("pipeline scaling coverage: error: --reps must be >= 1 and --n-boot >= 20", file=sys.stderr)
        return 2
    try:
        records = load_records(args.sweep_dir)
    except (OSError, ValueError) as err:
        print(f"pipeline scaling coverage: error: {err}", file=sys.stderr)
        return 2
    every = max(1, args.reps // 20)

    def progress(done: int, total: int, elapsed: float) -> None:
        if done % every == 0 or done == total:
            print(f"coverage: {done}/{total} simulated sweeps, {elapsed:.0f} s elapsed, "
                  f"~{elapsed / done * (total - done):.0f} s left", file=sys.stderr, flush=True)  # fmt: skip

    try:
        result = coverage(records, args.arch_a, args.arch_b, args.reps, args.n_boot, args.seed,
                          args.unigram_entropy, progress)  # fmt: skip
    except ValueError as err:
        print(f"pipeline scaling coverage: error: {args.sweep_dir}: {err}", file=sys.stderr)
        return 2
    out = args.out or Path(args.sweep_dir) / f"coverage-{args.arch_a}-{args.arch_b}.json"
    save_json_atomic(out, result)
    c = result["coverage"]["ratio"]
    print(f"L_{args.arch_a} / L_{args.arch_b} at {result['at_compute']:.3g} FLOPs: the 95 % interval covered the "
          f"truth in {c['rate']:.3f} of {c['n']} simulated sweeps (binomial SE {c['binomial_se']:.3f}); wrote {out}")  # fmt: skip
    estimates = {"ratio": result["ratio_estimates"]} | {
        f"alpha_C {a}": e for a, e in result["alpha_estimates"].items()
    }
    for name, e in estimates.items():
        print(f"  {name}: observed {e['observed']:.4g}, simulated bias {e['bias']:+.3g} ({e['bias_in_sd']:+.2f} sd), "
              f"bias-corrected {e['bias_corrected']:.4g}")  # fmt: skip
    return 0
