"""Render benchmark JSON: a short rich table on the terminal and `SUMMARY.md` rebuilt from every JSON in a directory."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.mqar_summary import MQAR_HEAD, mqar_rows, mqar_section
from benchmarks.roofline_summary import ROOFLINE_HEAD, roofline_rows, roofline_section

CLOCKS = {
    "cpu": "process CPU time (the machine was shared, and the wall clock also counts the neighbours' share of the "
    "cores; the wall-clock ratio is in the JSON as `wall_ratio`)",
    "wall": "wall clock, the device synchronised at both ends of each timed window",
}


METHODS = {
    "paired steps": "interleaved per step: in every trainer step a plain step runs on the same batch (at the "
    "step's start or end, alternating per repeat), and a trainer step is its cycle time minus that plain step.",
    "windows": "each loop times a window of steps, the device synchronised at its ends; repeats alternate which "
    "loop goes first.",
}


def _spread(s: dict[str, float], spec: str = ".0f", scale: float = 1.0) -> str:
    return f"{s['median'] * scale:{spec}} [{s['min'] * scale:{spec}}, {s['max'] * scale:{spec}}]"


def throughput_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in result["suites"].get("throughput", {}).get("rows", []):
        rows.append(
            [
                r["size"],
                r["arch"],
                f"{r['params'] / 1e6:.2f}M",
                str(r["batch_tokens"]),
                _spread(r["plain_tokens_per_s"]),
                _spread(r["trainer_tokens_per_s"]),
                _spread(r["ratio"], ".3f"),
                f"{overhead_ms(r):+.1f}",
                f"{r['trainer_flops_per_s']['median'] / 1e9:.1f}",
                "n/a (CPU)" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%",
            ]
        )
    return rows


THROUGHPUT_HEAD = ["size", "arch", "params", "batch tok", "plain tok/s", "trainer tok/s", "trainer/plain",
                   "trainer - plain ms/step", "trainer GFLOP/s", "MFU"]  # fmt: skip


def overhead_ms(row: dict[str, Any]) -> float:
    """The trainer's extra time per step, from the median rates and the mean tokens per timed step."""
    tokens_per_step = statistics.mean(p["tokens_per_window"] for p in row["per_repeat"]) / row["timed_steps"]
    trainer, plain = row["trainer_tokens_per_s"]["median"], row["plain_tokens_per_s"]["median"]
    return 1000 * tokens_per_step * (1 / trainer - 1 / plain)


def seq_len_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    suite = result["suites"].get("seq_len", {})
    by_len: dict[int, dict[str, dict[str, Any]]] = {}
    for r in suite.get("rows", []):
        by_len.setdefault(r["seq_len"], {})[r["arch"]] = r
    archs = sorted({r["arch"] for r in suite.get("rows", [])})
    head = ["seq len", "rows"] + [f"{a} tok/s (vs shortest)" for a in archs]
    if {"lstm", "transformer"} <= set(archs):
        head.append("lstm / transformer")
    rows = []
    for length, cells in sorted(by_len.items()):
        row = [str(length), str(next(iter(cells.values()))["rows"])]
        row += [
            f"{_spread(cells[a]['tokens_per_s'])} ({cells[a]['relative_to_shortest']:.2f}x)" for a in archs
        ]
        if {"lstm", "transformer"} <= set(cells):
            ratio = cells["lstm"]["tokens_per_s"]["median"] / cells["transformer"]["tokens_per_s"]["median"]
            row.append(f"{ratio:.2f}")
        rows.append(row)
    return head, rows


LOADER_HEAD = [
    "batch tok",
    "loader tok/s (1 process)",
    "start-up s",
    "fastest trainer tok/s",
    "headroom (goal 10x)",
]


def loader_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in result["suites"].get("loader", {}).get("rows", []):
        consumed = r["trainer_tokens_per_s"]
        rows.append(
            [
                str(r["batch_tokens"]),
                _spread(r["loader_tokens_per_s"]),
                _spread(r["startup_s"], ".2f"),
                "-" if consumed is None else f"{consumed:.0f}",
                "-" if r["headroom"] is None else f"{r['headroom']:.1f}x",
            ]
        )
    return rows


FIXES_HEAD = ["size", "arch", "loss fwd+bwd ms before -> after", "before tok/s", "after tok/s", "speedup",
              "per-step speedup median [min, max]"]  # fmt: skip


def fixes_rows(result: dict[str, Any]) -> list[list[str]]:
    return [
        [
            r["size"],
            r["arch"],
            f"{r['loss_ms']['before']:.1f} -> {r['loss_ms']['after']:.1f}",
            f"{r['before_tokens_per_s']:.0f}",
            f"{r['after_tokens_per_s']:.0f}",
            f"{r['speedup']:.3f}",
            _spread(r["step_speedup"], ".3f"),
        ]
        for r in result["suites"].get("fixes", {}).get("rows", [])
    ]


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    tables = [
        ("trainer step vs plain PyTorch loop (median [min, max])", THROUGHPUT_HEAD, throughput_rows(result))
    ]
    tables.append(("tokens/s vs sequence length", *seq_len_rows(result)))
    tables.append(("data loader vs trainer", LOADER_HEAD, loader_rows(result)))
    tables.append(("roofline: eager vs compiled (median [min, max])", ROOFLINE_HEAD, roofline_rows(result)))
    tables.append(("one MQAR step: pipeline vs plain loop (median [min, max])", MQAR_HEAD, mqar_rows(result)))
    for title, head, rows in tables:
        if not rows:
            continue
        table = Table(title=title)
        for h in head:
            table.add_column(h)
        for row in rows:
            table.add_row(*row)
        console.print(table)


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def machine_lines(result: dict[str, Any]) -> list[str]:
    m = result["machine"]
    gpu = m["gpu"]
    device = (
        f"GPU {gpu['name']} ({gpu['memory_gib']} GiB, CUDA {gpu['cuda']}, cuDNN {gpu['cudnn']})"
        if gpu
        else "CPU"
    )
    load = ", ".join(f"{x:.1f}" for x in m["load_average_at_start"] or [])
    return [
        f"- Command: `{result['command']}` (started {result['started']}, {result['wall_s']:.0f} s in all)",
        f"- Machine: {m['cpu']}, {m['cpu_cores']} cores; device: {device}; precision `{m['precision']}`",
        f"- Software: Python {m['python']}, torch {m['torch']}, lightning {m['lightning']}",
        f"- `torch.set_num_threads({m['torch_threads']})`; load average at start: {load} (the machine was shared)",
    ]


def result_section(result: dict[str, Any]) -> list[str]:
    m = result["machine"]
    title = m["gpu"]["name"] if m["gpu"] else f"CPU ({m['cpu']})"
    lines = [f"## {title}, {m['precision']}", "", *machine_lines(result), ""]
    suites = result["suites"]
    if "throughput" in suites:
        t = suites["throughput"]
        lines += [
            "### 1. `pipeline train` step vs a hand-written PyTorch loop",
            "",
            "Same initial weights, batches (real loader batches), precision and threads, in one process; "
            f"{METHODS[t['rows'][0]['method']] if t['rows'] else ''} Cells: median [min, max] over repeats; "
            "trainer/plain is the median "
            f"of per-repeat ratios (goal >= 0.97). Clock: {CLOCKS[t['clock']]}. Trainer logging every "
            "min(10, timed steps) steps, so each timed window holds a logging step.",
            "",
            *_md_table(THROUGHPUT_HEAD, throughput_rows(result)),
            "",
            f"MFU: {t['mfu_note']}.",
            "",
        ]
    if "seq_len" in suites:
        s = suites["seq_len"]
        head, rows = seq_len_rows(result)
        lines += [
            "### 2. Tokens/s vs sequence length (the sequential bottleneck)",
            "",
            f"{s['tokens_per_batch']} tokens per batch at every length (rows = tokens / length), full-length synthetic "
            f"batches, vocabulary {s['vocab_size']}, plain loop; models: "
            + "; ".join(f"`{a}` {json.dumps(cfg)}" for a, cfg in s["models"].items()),
            "",
            *_md_table(head, rows),
            "",
        ]
    if "loader" in suites:
        lines += [
            "### 3. Data loader alone vs the trainer's consumption",
            "",
            "Loader in one process (`num_workers=0`), steady rate after its start-up; each extra worker process "
            "adds about as much again.",
            "",
            *_md_table(LOADER_HEAD, loader_rows(result)),
            "",
        ]
    if "fixes" in suites:
        lines += [
            "### 4. Fixes: before / after, same run",
            "",
            "Fix 1: `Seq2SeqModule.training_step` computed `seq2seq_loss` (smoothed loss *and* the unsmoothed NLL "
            "sum, a second log-softmax over tokens x vocabulary) and discarded the NLL sum; it now calls "
            "`seq2seq_train_loss`. Found by profiling the step (`cross_entropy_loss` was 14% of a tiny "
            "Transformer step, called twice). Timed here as two copies of one model, one step each on the same "
            "batch, alternating order; it speeds up the plain loop and the trainer alike, so it does not move "
            "the ratio in section 1.",
            "",
            *_md_table(FIXES_HEAD, fixes_rows(result)),
            "",
        ]
    return lines + roofline_section(result) + mqar_section(result)


def write_summary(out: Path, name: str = "SUMMARY.md") -> Path:
    # only `benchmarks.run` results: other studies keep their own JSON in the same folder
    results = [r for p in sorted(Path(out).glob("*.json")) if "suites" in (r := json.loads(p.read_text()))]
    has_gpu = any(r["machine"]["gpu"] for r in results)
    lines = [
        "# Benchmark results",
        "",
        "Generated by `benchmarks/summary.py` from the JSON files next to it; every figure in a section came from "
        "the command that section names, on the machine it describes. How the suites measure: `benchmarks/README.md`.",
        "",
    ]
    if not has_gpu:
        lines += [
            "**No GPU was available for these results**: they are CPU only, so there is no MFU (a CPU has no "
            "official peak FLOP/s; achieved FLOP/s are reported instead) and no bf16/cuDNN figures. On a GPU run "
            "`python -m benchmarks.run --device cuda --precision bf16-mixed`; its section will be added here.",
            "",
        ]
    for result in results:
        lines += result_section(result)
    path = Path(out) / name
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
