"""The demo's one page: `runs/demo/summary.md`, from the sweep's fit.json, the report's figures, the showcase run
and the recall panel's capacity report (whose result opens the page).

Kept apart from `demo.py` (which runs things) because it only reads files: rerun `write_summary` on a finished demo
directory to rebuild the page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TITLE = "# pipeline demo: where does recurrence stop scaling? (in miniature)"
FIGURES = (
    ("loss_vs_compute", "loss against training compute, with the compute frontier"),
    ("loss_vs_params", "loss against non-embedding parameters"),
    ("loss_vs_position", "loss by target position"),
    ("position_ratio", "recurrent / Transformer loss ratio by target position"),
)


def _ci(value: Any, ci: Any) -> str:
    if not isinstance(value, int | float):
        return "n/a"
    text = f"{value:.3f}"
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(isinstance(c, int | float) for c in ci):
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def fit_rows(fit: dict[str, Any]) -> list[str]:
    """One markdown row per architecture: runs, best frontier loss, alpha_C (model FLOPs) with its 95 % CI."""
    rows = []
    for arch, a in fit.get("archs", {}).items():
        exps = a.get("compute_exponents", {}).get("model", {})
        front = a.get("frontier") or []
        best = min((p["loss"] for p in front), default=None)
        sizes = a.get("non_embedding_sizes") or []
        size_text = f"{min(sizes) / 1e3:.0f}k-{max(sizes) / 1e3:.0f}k" if sizes else "-"
        n = a.get("n_runs", 0)
        alpha = _ci(exps.get("alpha"), exps.get("ci95")) if n >= 2 else "n/a (one run: no interval)"
        rows.append(f"| {arch} | {n} | {size_text} | {best:.3f} | {alpha} |" if best is not None
                    else f"| {arch} | {n} | {size_text} | - | n/a |")  # fmt: skip
    return rows


def write_summary(out: Path, sweep_dir: Path, report: Path | None, showcase: dict[str, Any], total_s: float,
                  no_fit: str | None = None, recall: list[str] | None = None) -> Path:  # fmt: skip
    """`out/summary.md`; `report` None (with `no_fit`, the reason) when the sweep could not be fitted; `recall`:
    the recall panel's lines (`recall_lines`), the page's first after its title."""
    top = [TITLE, "", *(recall or [])]
    if report is None:
        return _write(
            out / "summary.md", top + _unfitted(sweep_dir, total_s, no_fit) + showcase_section(showcase)
        )
    fit = json.loads((report.parent / "fit.json").read_text())
    n_runs = fit.get("n_runs", 0)
    nothing = fit.get("learned_nothing", {}).get("count", 0)
    rel = report.parent.relative_to(out) if report.parent.is_relative_to(out) else report.parent
    lines = [
        *top,
        f"Wall time {total_s / 60:.1f} min on this machine. Corpus: English WEB -> French Segond 1910 (Bible, whole "
        "books held out), 4k joint BPE, tokenized into webdataset shards. Every model below is its own offline W&B "
        f"run (group `demo`; the recall models `demo-recall`) under its run directory. Full report: [{rel}/report.md]({rel}/report.md).",
        "",
        f"## The sweep: {n_runs} runs ({sweep_dir})",
        "",
        "3 architectures x 3 sizes, one token budget validated several times per run, same batches for every "
        "model. alpha_C: the exponent of L(C) = A C^-alpha on the compute frontier (the model's own FLOPs, every "
        "validation point), 95 % bootstrap CI.",
        "",
        "| arch | runs | non-embedding params | best frontier loss | alpha_C [95 % CI] |",
        "|---|---|---|---|---|",
        *fit_rows(fit),
        "",
    ]
    if nothing:
        lines += [
            f"{nothing} run(s) ended at or above the unigram entropy (learned nothing) and are out of the fits.",
            "",
        ]
    for name, caption in FIGURES:
        if (report.parent / f"{name}.png").is_file():
            lines += [f"![{caption}]({rel}/{name}.png)", ""]
    lines += showcase_section(showcase)
    lines += [
        "## What this miniature can and cannot show",
        "",
        "It shows the loop working end to end: data, three architectures on identical batches, one record per "
        "run, fits with bootstrap intervals, the figures. It cannot answer the question. The models are tiny "
        "(tens of thousands of non-embedding parameters), the budgets are a fraction of one pass over the data, "
        "each point has one seed and one learning rate, the targets are at most 64 tokens and attention hands every "
        "decoder the source, so nothing here has to travel far through a recurrence. With three sizes and one "
        "budget an exponent's interval is wide and a Chinchilla surface is barely identified; treat every number "
        "above as a hint. `results/translation-cpu` and `results/context-cpu` are the larger CPU studies (translation "
        "within one pass; language modelling at 512 tokens of context); `configs/sweeps/gpu-scale.yaml` and "
        "`configs/sweeps/context-gpu.yaml` the grids a cluster should run.",
        "",
    ]
    return _write(out / "summary.md", lines)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _unfitted(sweep_dir: Path, total_s: float, why: str | None) -> list[str]:
    """The page's head when nothing could be fitted: every run's final loss against its unigram entropy."""
    from pipeline.scaling.records.sweep_dir import load_records

    rows = [
        f"| {r.run} | {r.non_embedding_params:,} | {r.tokens:,} | {r.final_valid_loss:.3f} | "
        + (f"{r.unigram_entropy:.3f} |" if r.unigram_entropy else "- |")
        for r in load_records(sweep_dir)
    ]
    return [
        f"Wall time {total_s / 60:.1f} min. **No scaling law was fitted:** {why}. The budgets of this grid are "
        "too small for its models to learn more than token frequencies; raise `token_budgets`.",
        "",
        "| run | non-embedding params | tokens | final valid loss | unigram entropy |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def _decoding(beam: int) -> str:
    return "greedy decoding" if beam == 1 else f"beam search (width {beam})"


def showcase_section(s: dict[str, Any]) -> list[str]:
    lines = [
        f"## The showcase: {s.get('arch')} trained for {s.get('steps')} steps",
        "",
        f"{(s.get('params') or 0) / 1e6:.2f}M parameters, {s.get('tokens') or 0:,} target tokens, validation loss "
        f"{s.get('valid_loss') or float('nan'):.3f}; {_decoding(s.get('beam', 1))} of "
        f"{s.get('decoded_pairs', 'the first')} test verses: BLEU {s.get('bleu') or 0:.2f}, chrF {s.get('chrf') or 0:.1f}.",
        "",
        "| source (English) | model (French) | reference |",
        "|---|---|---|",
    ]
    for ex in s.get("examples", [])[:6]:
        cells = [str(ex.get(k, "")).replace("|", "/") for k in ("src", "hyp", "ref")]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _budget(records: list[Any]) -> str:
    """`300 steps of 256 sequences` from the records (every run of the panel has the same budget)."""
    r = records[0]
    steps = int(r.config["train"]["max_steps"])
    length = int(r.answer_metrics["L"])
    return f"{steps} steps of {round(r.tokens / steps / length)} sequences"


def _arch_result(arch: str, widths: dict[str, Any], threshold: float, records: list[Any]) -> str:
    """One bullet: where the architecture's accuracy first fell below the threshold (or that it did not)."""
    parts = []
    for d, w in sorted(widths.items(), key=lambda kv: int(kv[0])):
        acc = {int(n): a for n, a in w["accuracy"].items()}
        lrs = sorted({r.lr for r in records if r.arch == arch and r.lr})
        floats = max(w["state_floats_by_n"].values())
        length = max(int(r.answer_metrics["L"]) for r in records)
        state = f"KV cache at L = {length}:" if arch == "transformer" else "state"
        head = f"**{arch}** (d = {d}, lr {', '.join(f'{x:g}' for x in lrs)}, {state} {floats:,} floats)"
        below = [n for n in sorted(acc) if acc[n] < threshold]
        if below:
            n = below[0]
            plateau = f" (1/N = {1 / n:.3g})" if n > 1 else ""  # a guess among the sequence's N values
            verdict = f"recall fell below {threshold:g} at N = {n}: accuracy {acc[n]:.3f}{plateau}"
        else:
            verdict = f"recall did not fall below {threshold:g} within the grid (N ≤ {max(acc)})"
        by_n = ", ".join(f"{n}: {a:.3f}" for n, a in sorted(acc.items()))
        parts.append(f"- {head}: {verdict}. Accuracy by N: {by_n}.")
    return "\n".join(parts)


def recall_lines(out: Path, recall_dir: Path, report: Path | None, why: str | None) -> list[str]:
    """The page's opening: what the recall panel measured, from its capacity report (fit.json) and records."""
    if report is None:
        return [f"**Recall panel: nothing to report** ({why}); the arms' logs are {out}/recall-*.log.", ""]
    from pipeline.scaling.records.sweep_dir import load_records

    cap = json.loads((report.parent / "fit.json").read_text()).get("capacity") or {}
    records = load_records(recall_dir)
    if not cap.get("archs") or not records:
        return [
            f"**Recall panel: no finished runs** in {recall_dir}; the arms' logs are {out}/recall-*.log.",
            "",
        ]
    rel = report.parent.relative_to(out) if report.parent.is_relative_to(out) else report.parent
    threshold, lengths = cap["threshold"], sorted({length for length, _ in cap["cells_L_N"]})
    ns = sorted({n for _, n in cap["cells_L_N"]})
    answers = sorted({int(r.answer_metrics["answers"]) // int(r.answer_metrics["N"]) for r in records})
    return [
        f"**Recall panel, measured:** multi-query associative recall (MQAR: N key-value pairs, then each key "
        f"again; the answer is its value), V = {cap['V']}, L = {', '.join(map(str, lengths))}, N = "
        f"{', '.join(map(str, ns))}; each model trained {_budget(records)}, one seed, one learning rate; answer "
        f"accuracy (exact match) on {', '.join(map(str, answers))} validation sequences per N, threshold "
        f"{threshold:g}.",
        "",
        *[_arch_result(a, ac["widths"], threshold, records) for a, ac in cap["archs"].items()],
        "",
        f"![recall accuracy against N]({rel}/capacity_accuracy.png) (threshold dashed, chance 1/(V/2) = "
        f"{cap['chance']:.3g} dotted); the full capacity report: [{rel}/report.md]({rel}/report.md). A run near "
        "1/N names one of its sequence's values without binding it to its key: at a budget this small that is a "
        "limit of training, not a measured capacity (the Transformer's cache keeps every pair). "
        "`configs/sweeps/recall-cpu.yaml` is the study that measures N*(d) with CIs.",
        "",
    ]
