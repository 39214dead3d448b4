"""The mqar suite's table (terminal and SUMMARY.md): one MQAR training step per architecture, through the pipeline's
trainer and through the hand-written loop, at the shape the run names (benchmarks/bench_mqar.py)."""

from __future__ import annotations

from typing import Any

MQAR_HEAD = ["arch", "params", "batch (seq x L, answers)", "pipeline ms/step", "plain ms/step", "pipeline tok/s",
             "plain tok/s", "pipeline/plain", "FLOPs/token"]  # fmt: skip


def _mid(s: dict[str, float], spec: str = ".0f", scale: float = 1.0) -> str:
    return f"{s['median'] * scale:{spec}} [{s['min'] * scale:{spec}}, {s['max'] * scale:{spec}}]"


def mqar_rows(result: dict[str, Any]) -> list[list[str]]:
    suite = result["suites"].get("mqar", {})
    length = suite.get("shape", {}).get("seq_len")
    return [
        [
            r["arch"],
            f"{r['params'] / 1e3:.1f}k",
            f"{r['rows']} x {length}, {r['answers_per_batch']}",
            _mid(r["pipeline_step_s"], ".1f", 1e3),
            _mid(r["plain_step_s"], ".1f", 1e3),
            _mid(r["pipeline_tokens_per_s"]),
            _mid(r["plain_tokens_per_s"]),
            _mid(r["ratio"], ".3f"),
            f"{r['flops_per_token']:.3g}",
        ]
        for r in suite.get("rows", [])
    ]


def mqar_section(result: dict[str, Any]) -> list[str]:
    """The SUMMARY.md section, or [] if the run had no mqar suite."""
    if "mqar" not in result["suites"]:
        return []
    s = result["suites"]["mqar"]
    shape = ", ".join(f"{k} {v}" for k, v in s["shape"].items())
    return [
        "### MQAR: one training step per architecture, pipeline vs a hand-written loop",
        "",
        f"Shape: {shape}. The pipeline step is `pipeline train`'s (Lightning, every callback, the output "
        "projection at the answers only); the plain step writes the same answer-only step by hand; same weights "
        "and loader batches, interleaved as `benchmarks/trainer_timing.py` does. Cells: median [min, max] over repeats; pipeline/plain "
        "is the median of per-repeat tokens/s ratios; FLOPs/token as the record counts them (docs/flops.md). "
        "How: `benchmarks/bench_mqar.py`.",
        "",
        "| " + " | ".join(MQAR_HEAD) + " |",
        "|" + "---|" * len(MQAR_HEAD),
        *("| " + " | ".join(row) + " |" for row in mqar_rows(result)),
        "",
    ]
