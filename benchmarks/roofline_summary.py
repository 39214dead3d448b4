"""The roofline suite's table (terminal and SUMMARY.md): the GEMM limit, each model's share of it, eager and
compiled, the compiled speedup with its compile time, and the recurrences' step time against nn.LSTM's."""

from __future__ import annotations

from typing import Any

ROOFLINE_HEAD = ["size", "arch", "params", "eager tok/s", "compiled tok/s", "speedup", "eager % of limit",
                 "compiled % of limit", "step / token GEMM % of limit", "compile s (warm)", "break-even steps (warm)",
                 "step / lstm (eager, compiled)"]  # fmt: skip


def _mid(s: dict[str, float], spec: str = ".0f", scale: float = 1.0) -> str:
    return f"{s['median'] * scale:{spec}} [{s['min'] * scale:{spec}}, {s['max'] * scale:{spec}}]"


def _num(x: float | None, spec: str = ".0f") -> str:
    return "-" if x is None else f"{x:{spec}}"


def roofline_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in result["suites"].get("roofline", {}).get("rows", []):
        vs = r.get("step_vs_lstm")
        c = r["compiled"]
        if c is None:
            compiled = "not compiled"
        else:
            compiled = "eager (fallback)" if r["fallback"] else _mid(c["tokens_per_s"])
        gemm = r.get("shape_limits")
        warm = r.get("recompile_s")
        rows.append(
            [
                r["size"],
                r["arch"],
                f"{r['params'] / 1e6:.2f}M",
                _mid(r["eager"]["tokens_per_s"]),
                compiled,
                "-" if r["speedup"] is None else _mid(r["speedup"], ".2f"),
                f"{100 * r['eager']['of_limit']['median']:.1f}",
                "-" if c is None else f"{100 * c['of_limit']['median']:.1f}",
                "-"
                if gemm is None
                else f"{100 * gemm['step']['of_limit']:.1f} / {100 * gemm['tokens']['of_limit']:.1f}",
                _num(r["compile_s"]) + ("" if warm is None else f" ({warm:.0f})"),
                _num(r["break_even_steps"], "d")
                + ("" if r.get("break_even_warm_steps") is None else f" ({r['break_even_warm_steps']})"),
                "-" if vs is None else f"{vs['eager']:.2f}, {_num(vs['compiled'], '.2f')}",
            ]
        )
    return rows


def limit_line(result: dict[str, Any]) -> str:
    g = result["suites"]["roofline"]["gemm"]
    sizes = ", ".join(f"{n}²: {v / 1e9:.1f}" for n, v in g["flops_per_s"].items())
    return (f"GEMM limit (best fp32 `torch.mm`, {g['clock']} clock): **{g['limit'] / 1e9:.1f} GFLOP/s** "
            f"(GFLOP/s by size: {sizes})")  # fmt: skip


def roofline_section(result: dict[str, Any]) -> list[str]:
    """The SUMMARY.md section, or [] if the run had no roofline suite."""
    if "roofline" not in result["suites"]:
        return []
    r = result["suites"]["roofline"]
    fallbacks = [f"- {x['size']} {x['arch']}: {x['fallback']}" for x in r["rows"] if x["fallback"]]
    skipped = [f"- {x['size']} {x['arch']}: {x['not_compiled']}" for x in r["rows"] if x.get("not_compiled")]
    return [
        "### Roofline: training FLOP/s against this machine's GEMM rate, eager and compiled",
        "",
        limit_line(result) + ".",
        "",
        "Both loops are the hand-written training step on copies of one model, same batches, in one process; "
        f"compiled = `train.compile=model` ({r['backend']}). Cells: median [min, max] over repeats; speedup is "
        "the median of per-repeat compiled/eager tokens/s; compile s = the compiled copy's first pass over "
        "every batch shape minus the eager copy's; break-even = the steps a run needs before compiling pays; "
        "step / lstm = seconds per step over `lstm`'s at the same size; step / token GEMM = the rate of "
        "one [rows, d] x [d, 4d] `addmm` (a recurrent step's GEMM at this size's rows and width) and of one "
        "[tokens, d] x [d, 4d] (a token-parallel layer's), as shares of the limit; (warm) = compiling a fresh copy with the compiler's caches warm, as a sweep's later runs do. "
        f"How: `benchmarks/roofline.py`; top ops per row: `{r['profile']}`."
        + ("" if r.get("complete", True) else " **Incomplete run: the rows measured before it stopped.**"),
        "",
        *_table(roofline_rows(result)),
        "",
        *(["Fell back to eager:", *fallbacks, ""] if fallbacks else []),
        *(["Eager only:", *skipped, ""] if skipped else []),
        *fix_lines(r.get("fixes", [])),
    ]


def fix_lines(fixes: list[dict[str, Any]]) -> list[str]:
    """Fixes 2 and 3 (benchmarks/speed_fixes.py), before -> after in the same run."""
    lines = []
    for f in fixes:
        if "step_speedup" in f:
            b, a = f["before_step_s"]["median"], f["after_step_s"]["median"]
            lines.append(f"- {f['fix']}, d_model {f['model']['d_model']}, {f['rows']} x {f['seq_len']} tokens: "
                         f"{b:.3f} -> {a:.3f} s a training step (per-step speedup {_mid(f['step_speedup'], '.2f')})")  # fmt: skip
        else:
            lines.append(f"- {f['fix']}, tiny {f['arch']} ({f['tensors']} tensors): "
                         f"{f['before_ms']:.2f} -> {f['after_ms']:.2f} ms an optimizer step")  # fmt: skip
    return ["Eager fixes, before -> after in this run (medians, interleaved):", *lines, ""] if lines else []


def _table(rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(ROOFLINE_HEAD) + " |",
        "|" + "---|" * len(ROOFLINE_HEAD),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
