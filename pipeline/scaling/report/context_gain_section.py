"""The report's "Gain from distant context" section: each size's loss by band of target positions and the gain
from the near band to the last, with its CI (`analyses.context_gain`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.scaling.analyses.context_gain import NEAR, ContextGain, context_gains
from pipeline.scaling.analyses.positions import N_BOOT
from pipeline.scaling.records.run_files import RunFiles
from pipeline.scaling.records.run_record import RunRecord


def context_gain_lines(rows: list[ContextGain]) -> list[str]:
    """The section's markdown lines; [] without rows."""
    if not rows:
        return []
    bands = rows[0].bands
    head = " | ".join(f"t {lo}-{hi - 1}" if hi - lo > 1 else f"t {lo}" for lo, hi in bands)
    md = ["## Gain from distant context", "",
          f"Validation loss by band of target positions (each size's runs at its best rate, seeds averaged per "
          f"sequence) and the gain from t {NEAR[0]}-{NEAR[1] - 1} to the last band, with a 95 % CI from "
          f"{N_BOOT} bootstrap resamples of validation sequences. A plateau of a recurrent model relative to the "
          "Transformer can only be detected where the Transformer itself still gains: where its gain is within its "
          "CI of 0, the context axis is not yet resolved at this scale. The bands hold different tokens, so this "
          "estimate is noisy by construction; runs with a truncation file (`pipeline evaluate --contexts`, "
          "`train.eval_contexts`) get the paired \"Context (truncation)\" section instead.", "",
          f"| arch | non-embedding params | seeds | {head} | gain [95 % CI] |",
          "|---|---|---|" + "---|" * len(bands) + "---|"]  # fmt: skip
    for r in rows:
        cells = " | ".join(f"{v:.3f}" for v in r.loss)
        md.append(
            f"| {r.arch} | {r.n:,} | {r.seeds} | {cells} | {r.gain:+.3f} [{r.ci[0]:+.3f}, {r.ci[1]:+.3f}] |"
        )
    return [*md, ""]


def context_gain_section(sweep_dir: str | Path | RunFiles, records: Sequence[RunRecord]) -> list[str]:
    """The section alone, from the sweep's files (``sweep_dir``: its directory or its `RunFiles`)."""
    return context_gain_lines(context_gains(sweep_dir, records))
