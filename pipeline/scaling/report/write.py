"""`pipeline scaling report`: fit a sweep, run every analysis (`analyses.study`), and write report.md, its
figures and fit.json. Sections are rendered from the one result object, in the order they appear. A sweep of
memory-task runs gets the "Capacity law" section; one with no text-task runs gets only that, with one
line saying why the text-task sections are skipped."""

from __future__ import annotations

from pathlib import Path

from pipeline.scaling.analyses.study import Study, analyse_study
from pipeline.scaling.analyses.token_subset import TokenSelector
from pipeline.scaling.records.sweep_dir import Source, source_dir
from pipeline.scaling.report.analysis_sections import analysis_sections
from pipeline.scaling.report.capacity_section import capacity_section
from pipeline.scaling.report.context_gain_section import context_gain_lines
from pipeline.scaling.report.core_sections import CAVEATS, main_sections, unfinished_list
from pipeline.scaling.report.fit_json import write_fit_json
from pipeline.scaling.report.grad_reach_section import grad_reach_report
from pipeline.scaling.report.law_figures import draw_law_figures
from pipeline.scaling.report.matched_runs_section import matched_runs_lines
from pipeline.scaling.report.position_figures import draw_position_figures
from pipeline.scaling.report.position_section import position_section
from pipeline.scaling.report.source_length_section import source_length_report
from pipeline.scaling.report.time_axis_section import draw_time_axis, time_axis_lines
from pipeline.scaling.report.token_subset_section import token_subset_lines
from pipeline.scaling.report.truncation_section import truncation_lines

REPORT_FILE = "report.md"


def report_lines(study: Study, out_dir: Path) -> list[str]:
    """Every line of report.md, drawing each section's figures into ``out_dir`` on the way."""
    sweep = study.fit
    if sweep is None:
        return memory_report_lines(study, out_dir)
    plots = draw_law_figures(sweep, out_dir) | draw_position_figures(sweep, study.position_curves, out_dir)
    return [
        *main_sections(sweep, plots),
        *position_section(sweep, plots),
        *token_subset_lines(study.token_subset),
        "",
        *capacity_section(study.capacity, out_dir),
        *analysis_sections(sweep, out_dir),  # each section below is [] when the sweep has nothing for it
        *matched_runs_lines(study.matched_runs),
        *source_length_report(study.source_lengths, out_dir),
        *truncation_lines(study.truncation, out_dir),
        *context_gain_lines(study.context_gains),
        *time_axis_lines(study.time_axis, draw_time_axis(study.time_axis, out_dir)),
        *grad_reach_report(study.grad_reach, out_dir),
        *CAVEATS,
    ]


def memory_report_lines(study: Study, out_dir: Path) -> list[str]:
    """report.md of a sweep whose runs are all memory tasks: the capacity law, and why nothing else."""
    cap = study.capacity
    n = cap.n_records if cap else 0
    left = (
        f"; {len(study.unfinished)} not finished yet: {unfinished_list(study.unfinished)}"
        if study.unfinished
        else ""
    )
    return [
        "# Scaling-law report",
        "",
        f"{n} finished runs{left}.",
        "",
        f"Text-task sections skipped: {study.text_skipped}.",
        "",
        *capacity_section(cap, out_dir),
    ]


def write_report(
    sweep_dir: Source,
    out_dir: str | Path | None = None,
    n_boot: int = 400,
    seed: int = 0,
    unigram_entropy: float | None = None,
    threshold: float = 0.9,
    tokens: TokenSelector | None = None,
) -> Path:
    """Fit ``sweep_dir``, write fit.json, the figures and report.md into ``out_dir`` (default ``SWEEP_DIR``, next
    to the run directories); returns the report.md path. ``threshold``: the capacity law's; ``tokens``: a token
    subset to score per run."""
    study = analyse_study(sweep_dir, n_boot, seed, unigram_entropy, threshold=threshold, tokens=tokens)
    out = Path(out_dir) if out_dir is not None else source_dir(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_fit_json(out, study.fit, study.time_axis, study.capacity, source_dir(sweep_dir), list(study.unfinished),
                   study.text_skipped)  # into --out, not the sweep  # fmt: skip
    path = out / REPORT_FILE
    path.write_text("".join(f"{line}\n" for line in report_lines(study, out)))
    return path
