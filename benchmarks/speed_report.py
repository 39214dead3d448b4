"""What `benchmarks/speed_check.sh` measured, against the speed goals, in a few lines (and SUMMARY.md rebuilt).

    python -m benchmarks.speed_report benchmarks/results/speed-check

Reads `<dir>/run/cpu-32-true.json` (the mqar and roofline suites, complete or stopped early) and
`<dir>/loader_blocks_cpu.json`, rebuilds `<dir>/run/SUMMARY.md`, and prints per roofline size and architecture
eager and compiled tokens/s, the best of the two over eager (the 2x goal), the achieved rate beside the rates of
the step's own GEMM shapes (benchmarks/roofline_shapes.py: a recurrent step's and the token-parallel one), the hand-written recurrences' step against nn.LSTM's
(the 1.5x goal), the mqar suite's pipeline/plain, the loader before/after, and the `train.compile=auto` table the
run implies (benchmarks/auto_compile.py), cold and with the compiler's cache warm.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HAND_WRITTEN = ("lstm_no_cell_residual", "minlstm")


def roofline_lines(suite: dict[str, Any]) -> list[str]:
    limit = suite["gemm"]["limit"]
    lines = [f"GEMM limit {limit / 1e9:.1f} GFLOP/s ({suite['gemm']['clock']} clock)"
             + ("" if suite.get("complete") else "  [roofline stopped early: the rows it measured]")]  # fmt: skip
    op_cost = suite["gemm"].get("op_cost_s")
    if op_cost:
        lines[0] += f"; an op's fixed cost {op_cost * 1e6:.1f} us"
    for r in suite["rows"]:
        eager = r["eager"]["tokens_per_s"]["median"]
        comp = r["compiled"]["tokens_per_s"]["median"] if r["compiled"] else None
        best = max(eager, comp or 0.0) / eager
        achieved = r["eager"]["flops_per_s"]["median"]
        gemms = "; ".join(
            f"{name} GEMM {'x'.join(map(str, g['shape']))} {g['flops_per_s'] / 1e9:.1f}"
            for name, g in r["shape_limits"].items()
        )
        line = (f"  {r['size']:>16} {r['arch']:>22}: eager {eager:>9,.0f} tok/s"
                + (f", compiled {comp:>9,.0f} ({r['speedup']['median']:.2f}x, compile {r['compile_s']:.0f} s"
                   + (f", warm {r['recompile_s']:.0f} s" if r.get("recompile_s") is not None else "") + ")"
                   if comp else ", not compiled")
                + f"; best/eager {best:.2f} (goal 2); eager {achieved / 1e9:.1f} GFLOP/s ({gemms} GFLOP/s)")  # fmt: skip
        ops, step_s = r["eager"].get("ops_per_step"), r["eager"]["step_s"]["median"]
        if op_cost and ops:
            line += f"; {ops:.0f} ops a step x {op_cost * 1e6:.1f} us = {ops * op_cost / step_s:.0%} of its eager step"
        vs = r.get("step_vs_lstm")
        if r["arch"] in HAND_WRITTEN and vs:
            compiled = "" if vs["compiled"] is None else f", compiled {vs['compiled']:.2f}"
            line += f"; step / nn.LSTM's: eager {vs['eager']:.2f}{compiled} (goal <= 1.5)"
        lines.append(line)
    return lines


def mqar_lines(suite: dict[str, Any]) -> list[str]:
    s = suite["shape"]
    lines = [f"mqar step (d {s['d_model']}, L {s['seq_len']}, V {s['vocab_size']}, {s['rows']} sequences)"
             + ("" if suite.get("complete", True) else "  [stopped early]")]  # fmt: skip
    for r in suite["rows"]:
        lines.append(f"  {r['arch']:>22}: pipeline {1e3 * r['pipeline_step_s']['median']:.1f} ms, plain "
                     f"{1e3 * r['plain_step_s']['median']:.1f} ms, pipeline/plain tokens/s "
                     f"{r['ratio']['median']:.3f} [{r['ratio']['min']:.3f}, {r['ratio']['max']:.3f}]")  # fmt: skip
    return lines


def loader_lines(lb: dict[str, Any]) -> list[str]:
    lines = [
        f"memory-task loader, pipeline/data at {lb['before_rev']} vs now ({lb['shape']['rows']} sequences a batch)"
    ]
    for side, s in lb["sides"].items():
        lines.append(f"  {side:>6} (format {s['format_version']}): {1e3 * s['mean_batch_s_cpu']:.1f} ms a batch "
                     f"(CPU), {s['tokens_per_s_cpu']:,.0f} tokens/s")  # fmt: skip
    for r in lb.get("implied_pipeline", []):
        lines.append(f"  pipeline {r['arch']:>22} (step + loader): {r['before_tokens_per_s']:,.0f} -> "
                     f"{r['after_tokens_per_s']:,.0f} tokens/s ({r['speedup']:.2f}x)")  # fmt: skip
    return lines


def report(directory: Path) -> list[str]:
    from benchmarks.auto_compile import auto_min_steps, table_source
    from benchmarks.summary import write_summary

    lines: list[str] = []
    run_json = directory / "run" / "cpu-32-true.json"
    if run_json.is_file():
        result = json.loads(run_json.read_text())
        suites = result["suites"]
        lines.append(f"{run_json} ({'complete' if result.get('complete') else 'stopped early'}, "
                     f"{result.get('wall_s', 0):.0f} s, load at start {result['machine']['load_average_at_start']})")  # fmt: skip
        if suites.get("mqar"):
            lines += mqar_lines(suites["mqar"])
        if suites.get("roofline"):
            lines += roofline_lines(suites["roofline"])
            for warm in (False, True):
                table, why = auto_min_steps(suites["roofline"], "cpu", warm=warm)
                lines.append(f"train.compile=auto table ({'warm cache' if warm else 'cold compile'}):")
                lines += [f"  {w}" for w in why] + ["  " + table_source(table).replace("\n", "\n  ").rstrip()]
        lines.append(f"summary: {write_summary(run_json.parent)}")
    else:
        lines.append(f"{run_json}: missing (the mqar/roofline run did not start)")
    lb_json = directory / "loader_blocks_cpu.json"
    lines += loader_lines(json.loads(lb_json.read_text())) if lb_json.is_file() else [f"{lb_json}: missing"]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.speed_report DIR", file=sys.stderr)
        return 2
    print("\n".join(report(Path(args[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
