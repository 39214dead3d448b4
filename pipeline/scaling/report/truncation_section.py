"""The report's "Context (truncation)" section: L(K) per architecture with cluster-bootstrap intervals,
the paired difference to the reference on the same tokens, K* with its interval, the Kneser-Ney floors beside the
models, and which runs beat the trigram (`analyses.context_truncation`). Small multiples, one panel per arch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.scaling.analyses.context_separation import describe_need
from pipeline.scaling.analyses.context_truncation import ArchTruncation, TruncationStudy
from pipeline.scaling.report.figure_style import (
    BAND_ALPHA,
    REFERENCE_COLOR,
    arch_colors,
    legend_below,
    save,
    setup_matplotlib,
    view_grid,
)

FIGURE = "context_truncation.png"


def _cluster_note(unit: str) -> str:
    """What one cluster holds: a Bible chapter or book in every translation, else one held-out document."""
    if unit in ("chapter", "book"):
        return f"every translation of a held-out {unit} together"
    if unit.startswith("window"):  # one held-out document (text:FILE): nothing coarser to resample
        return "the held-out split is one document, so its windows are resampled as if independent"
    return f"each held-out {unit} whole"


def _after(a: ArchTruncation) -> str:
    """How fast L(K) still falls after K* (0: the model stops gaining there), with its interval; - without K*."""
    t = a.k.test
    if a.k.k_star is None or t.slope_after_ci is None:
        return "-"
    return f"{t.slope_after:+.4f} [{t.slope_after_ci[0]:+.4f}, {t.slope_after_ci[1]:+.4f}]"


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def draw_truncation(study: TruncationStudy, out_dir: Path) -> str:
    """L(K) with its band and the floors (top row), L_arch(K) - L_reference(K) with its band (bottom)."""
    plt = setup_matplotlib()
    archs = study.archs
    colors = arch_colors([a.arch for a in archs])
    fig, (top, bottom) = view_grid(plt, 2, len(archs), sharey="view")
    ks = np.asarray(study.contexts)
    for ax, a in zip(top, archs, strict=True):
        c = colors[a.arch]
        ax.fill_between(ks, a.k.lo, a.k.hi, color=c, alpha=BAND_ALPHA, lw=0)
        ax.plot(ks, a.k.curve, "o-", color=c, ms=3, label="L(K), 95 % CI")
        for name, ls in (("bigram", ":"), ("trigram", "--")):
            value = getattr(a.floor, name)
            if value is not None:
                ax.axhline(value, color=REFERENCE_COLOR, ls=ls, lw=1, label=f"Kneser-Ney {name}")
        if a.k.k_star is not None:
            ax.axvline(a.k.k_star, color=c, lw=0.8, ls="-.", label="K*")
        ax.set_xscale("log", base=2)
        ax.set_title(
            f"{a.arch} ({a.non_embedding_params:,} params)" + ("" if a.conclusive else ", above trigram")
        )
        ax.set_xlabel("context K (tokens)")
        ax.set_ylabel("loss (nats/token)")
    for ax, a in zip(bottom, archs, strict=True):
        ax.axhline(0, color=REFERENCE_COLOR, lw=0.8)
        diff = study.paired.get(a.arch)
        if diff is None:  # the reference: nothing to subtract
            ax.remove()
            continue
        ax.fill_between(ks, diff.lo, diff.hi, color=colors[a.arch], alpha=BAND_ALPHA, lw=0)
        ax.plot(ks, diff.estimate, "o-", color=colors[a.arch], ms=3, label="arch - reference, 95 % CI")
        ax.set_xscale("log", base=2)
        ax.set_title(f"{a.arch} - {study.reference} (same tokens)")
        ax.set_xlabel("context K (tokens)")
        ax.set_ylabel("paired loss difference (nats)")
    fig.tight_layout()
    legend_below(fig, [*top, *bottom])
    return save(fig, out_dir / FIGURE)


def truncation_lines(study: TruncationStudy | None, out_dir: Path) -> list[str]:
    """The section's markdown lines ([] without truncation files), drawing its figure into ``out_dir``."""
    if study is None:
        return []
    conclusive = [a.arch for a in study.archs if a.conclusive]
    others = [a.arch for a in study.archs if not a.conclusive]
    md = ["## Context (truncation)", "",
          f"Every validation token scored given only its last K tokens (BOS first; a sliding window over the "
          f"validation stream), K in {', '.join(map(str, study.contexts))}: L(K) is over the *same* "
          f"{study.n_windows} windows x {study.n_positions} positions at every K, so differences between contexts "
          "and between architectures are paired. This replaces the band difference (different tokens per band) "
          f"as the study's context estimate. Intervals: 95 % percentile, {study.n_boot} "
          f"resamples of **{study.n_clusters} {study.unit}s** (whole clusters: {_cluster_note(study.unit)}; "
          f"{study.n_windows} windows), the same drawn clusters at every K. K* is where L(K) "
          "bends up (the calibrated bend test, sign-flip null over clusters; `analyses/k_star.py`).", ""]  # fmt: skip
    if study.null_rate is not None:
        md += [f"Level of the K* test at this design: {study.null_rate.describe()}.", ""]
    md += ["Floors: Kneser-Ney bigram and trigram (modified KN) fitted on the train windows each run's budget covers "
           "and scored on the same validation tokens. A model above the trigram has not learned local statistics, "
           "so its L(K) says nothing about distant context: **a context conclusion is drawn only from "
           + (", ".join(conclusive) if conclusive else "no architecture (none beats the trigram)") + "**"
           + (f"; {', '.join(others)} {'is' if len(others) == 1 else 'are'} above the trigram (shown, not "
              "interpreted)." if others else "."), "",
           "| arch | runs | non-embedding params | tokens | loss | bigram | trigram | beats trigram | K* [95 % CI] "
           "| slope of L after K*, nats per e-fold [95 % CI] |",
           "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for a in study.archs:
        ks = "none detected" if a.k.k_star is None else f"{a.k.k_star} [{a.k.ci[0]}, {a.k.ci[1]}]"
        md.append(f"| {a.arch} | {', '.join(f'`{r}`' for r in a.runs)} | {a.non_embedding_params:,} | {a.tokens:,} | "
                  f"{a.floor.loss:.3f} | {_f(a.floor.bigram)} | {_f(a.floor.trigram)} | "
                  f"{'yes' if a.conclusive else 'no'} | {ks} | {_after(a)} |")  # fmt: skip
    md += ["", *[f"- {a.arch}: {a.k.reason}" for a in study.archs], ""]
    if study.coverage:
        md += ["Each K* interval checked where the answer is known (`analyses/k_star_coverage.py`): the "
               "architecture's own per-token losses with their mean L(K) replaced by a sharp bend planted at its "
               "K* (the slopes measured before and after it), whole clusters resampled for each simulated study. "
               "The noise is the data's; a model that bends smoothly rather than at one K is not what this checks:",
               "",
               *[f"- {arch}: {c.describe()}" for arch, c in study.coverage.items()], ""]  # fmt: skip
    learned = [a.arch for a in study.archs if a.learned_positions]
    if learned:
        md += [f"**{', '.join(learned)}: learned position table.** A truncated context of K tokens sits at positions "
               "0..K, and in a causal model the table's last rows get the fewest gradients, so L(K) near the "
               "table's end measures those rows, not context use (`pipeline/models/rotary.py`): read its K* "
               "with care, or train with `model.positions: rope`.", ""]  # fmt: skip
    md += [
           "L(K) in nats per token [95 % CI]" + (f", and each architecture minus {study.reference} on the same "
                                                   "tokens:" if study.paired else ":"), "",
           "| K | " + " | ".join(a.arch for a in study.archs)
           + "".join(f" | {a} - {study.reference}" for a in study.paired) + " |",
           "|---|" + "---|" * (len(study.archs) + len(study.paired))]  # fmt: skip
    for i, k in enumerate(study.contexts):
        cells = [f"{a.k.curve[i]:.3f} [{a.k.lo[i]:.3f}, {a.k.hi[i]:.3f}]" for a in study.archs]
        cells += [f"{d.estimate[i]:+.3f} [{d.lo[i]:+.3f}, {d.hi[i]:+.3f}]" for d in study.paired.values()]
        md.append(f"| {k} | " + " | ".join(cells) + " |")
    md += ["", f"![L(K) per architecture]({draw_truncation(study, out_dir)})", ""]
    md += _gap_lines(study)
    if study.floors:
        beat = [f for f in study.floors if f.beats_trigram]
        md += [f"**{len(beat)} of {len(study.floors)} runs beat the trigram**: "
               + (", ".join(f"`{f.run}` ({f.loss:.3f} < {f.trigram:.3f})" for f in beat) or "none") + ".", ""]  # fmt: skip
    return md


def _gap_lines(study: TruncationStudy) -> list[str]:
    """The gain-gap table: does each architecture use the context beyond K differently from the reference, and
    how many held-out clusters would tell (``analyses/context_separation.py``)."""
    if not study.gaps:
        return []
    k_max = study.contexts[-1]
    per_cluster = study.n_tokens / max(study.n_clusters, 1)
    md = [f"Context beyond K, against {study.reference} on the same tokens: the gain gap D(K) = [L_a(K) - "
          f"L_a({k_max})] - [L_ref(K) - L_ref({k_max})] [95 % CI] (negative: the architecture uses less of the "
          f"tokens between K and {k_max} than {study.reference}). Where the interval covers 0, the held-out "
          f"{study.unit}s that would separate a true gap of the measured size with 80 % power (the interval "
          f"shrinking as 1/sqrt({study.unit}s); this split has {study.n_clusters}, {study.n_tokens:,} scored "
          "tokens). Only architectures that beat the trigram are interpreted.", "",
          "| K | " + " | ".join(f"{a}: D(K) | {a}: to separate" for a in study.gaps) + " |",
          "|---|" + "---|---|" * len(study.gaps)]  # fmt: skip
    for i, k in enumerate(study.contexts[:-1]):
        cells = []
        for gap in study.gaps.values():
            ci = gap.interval
            cells += [
                f"{ci.estimate[i]:+.4f} [{ci.lo[i]:+.4f}, {ci.hi[i]:+.4f}]",
                describe_need(gap, i, per_cluster),
            ]
        md.append(f"| {k} | " + " | ".join(cells) + " |")
    return [*md, ""]
