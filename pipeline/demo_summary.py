"""The demo's one page: `runs/demo/summary.md`, from the sweep's fit.json, the report's figures and the showcase run.

Kept apart from `demo.py` (which runs things) because it only reads files: rerun `write_summary` on a finished demo
directory to rebuild the page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
                  no_fit: str | None = None) -> Path:  # fmt: skip
    """`out/summary.md`; `report` None (with `no_fit`, the reason) when the sweep could not be fitted."""
    if report is None:
        return _write(out / "summary.md", _unfitted(sweep_dir, total_s, no_fit) + showcase_section(showcase))
    fit = json.loads((report.parent / "fit.json").read_text())
    n_runs = fit.get("n_runs", 0)
    nothing = fit.get("learned_nothing", {}).get("count", 0)
    rel = report.parent.relative_to(out) if report.parent.is_relative_to(out) else report.parent
    lines = [
        "# pipeline demo: where does recurrence stop scaling? (in miniature)",
        "",
        f"Wall time {total_s / 60:.1f} min on this machine. Corpus: English WEB -> French Segond 1910 (Bible, whole "
        "books held out), 4k joint BPE, tokenized into webdataset shards. Every model below is its own offline W&B "
        f"run (group `demo`) under its run directory. Full report: [{rel}/report.md]({rel}/report.md).",
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
        "# pipeline demo: where does recurrence stop scaling? (in miniature)",
        "",
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
