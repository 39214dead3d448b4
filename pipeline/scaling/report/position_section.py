"""report.md's "Loss by target position" section: where the numbers come from (per-token losses or the records'
mean curves), how the plateau is tested, and each recurrent architecture's t* with its CI or why there is none.
"""

from __future__ import annotations

from pipeline.scaling.analyses.plateau import ALPHA, N_GRID, Plateau
from pipeline.scaling.analyses.positions import MIN_SEQS, N_BOOT
from pipeline.scaling.analyses.sweep_fit import SweepFit
from pipeline.scaling.fits.crossing import REFERENCE_ARCH
from pipeline.scaling.records.token_losses import TOKEN_LOSS_FILE

METHOD = (
    "rho(t) = log(L_arch(t) / L_{ref}(t)) per 0-based target position t, both runs scored on the same validation "
    "sequences, so the CIs come from a *paired* bootstrap ({n_boot} resamples of sequences, the same ones on both "
    "sides; positions reached by fewer than {min_seqs} sequences get no CI). Plateau test: weighted (1 / bootstrap "
    "variance) regression of rho on log(t + 1), straight under H0 (both gain from context alike, or one a "
    "constant amount more per e-fold) against a one-sided hinge that bends upward at some t (the arch gains "
    "less from context than the reference after t). The statistic is the best hinge score over up to {n_grid} "
    "log-spaced breakpoints; its null law comes from the centred bootstrap replicates (the statistic ignores any "
    "straight line, so they are draws of the noise alone, correlations across positions included). t* is given "
    "only when 'no bend' is rejected at {alpha:.0%}; its 95 % CI is the percentile interval of the replicates' "
    "best breakpoints. `tests/unit/test_scaling_positions.py` checks the calibration: <= 5 % false plateaus "
    "(binomial tolerance) on flat and straight null curves at the CPU study's noise (SD 0.020-0.025 per "
    "position, 64 and 512 positions, also from per-token losses), and a known bend found within a factor 1.5."
)


def _line(arch: str, p: Plateau) -> str:
    head = f"- **{arch}** (its lowest-loss run vs {REFERENCE_ARCH}'s):"
    if p.source != TOKEN_LOSS_FILE:
        return f"{head} not tested: {p.reason}."
    t = p.test
    if p.position is not None and p.ci is not None and t is not None:
        return (
            f"{head} stops gaining from context relative to {REFERENCE_ARCH} after target position "
            f"t* = {p.position} (95 % CI [{p.ci[0]}, {p.ci[1]}], p = {p.p_value:.3g}): d rho / d log(t + 1) "
            f"goes from {t.slope_before:.3g} to {t.slope_after:.3g}."
        )
    return f"{head} {p.reason}."


def position_section(sweep: SweepFit, plots: dict[str, str]) -> list[str]:
    """Markdown lines of the section (figures named in ``plots``: "position", optionally "ratio")."""
    md = ["", "## Loss by target position", ""]
    tested = [p for p in sweep.plateaus.values() if p.source == TOKEN_LOSS_FILE]
    skipped = sweep.plateau_skipped
    if (
        tested or not sweep.plateaus
    ):  # nothing compared (no reference, or it was skipped): not for want of files
        md.append(
            f"Bands: 95 % CIs from {N_BOOT} bootstrap resamples of validation sequences (`{TOKEN_LOSS_FILE}`), "
            "independent of `--n-boot`. Runs without that file are drawn without a band."
        )
    else:
        md.append(
            f"No compared run saved `{TOKEN_LOSS_FILE}` (records written before per-token validation losses): "
            "the curves are the records' `loss_by_position`, without CIs, and no plateau is tested (the bend test "
            "needs the spread over validation sequences, which a mean curve does not carry)."
        )
    md += ["", f"![loss vs position]({plots['position']})", ""]
    if not sweep.plateaus and not skipped:
        md.append(f"No `{REFERENCE_ARCH}` runs, so no position comparison.")
    md += [_line(a, p) for a, p in sweep.plateaus.items()]
    md += [f"- **{a}**: {why}." for a, why in skipped.items()]
    if "ratio" in plots:
        if tested:
            text = METHOD.format(
                n_boot=N_BOOT, min_seqs=MIN_SEQS, n_grid=N_GRID, alpha=ALPHA, ref=REFERENCE_ARCH
            )
            md += ["", text]
        md += ["", f"![position ratio]({plots['ratio']})"]
    return md
