"""The position section names the real reason a comparison was skipped: which side learned nothing, by how much
(not "no per-token file" or "no transformer runs" when both exist)."""

from __future__ import annotations

from pathlib import Path

from pipeline.scaling.analyses.sweep_fit import fit_sweep
from pipeline.scaling.records.run_record import save_record
from pipeline.scaling.report.position_section import position_section
from tests.unit.test_scaling_seeds_lr import rec, write_sweep

PLOTS = {"position": "loss_vs_position.png"}


def _transformers(sweep: Path, loss: float) -> None:
    for n, tokens in ((20_000, 30_000), (60_000, 300_000)):
        name = f"transformer-{n}-{tokens}"
        save_record(sweep / name / "result.json",
                    rec(name, arch="transformer", n=n, tokens=tokens, loss=loss, unigram_entropy=5.5))  # fmt: skip


def test_a_reference_that_learned_nothing_is_named_with_its_margin(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_sweep(sweep)  # lstm runs that learned something
    _transformers(sweep, loss=6.25)  # every transformer run at 6.25 nats, entropy 5.5
    fit = fit_sweep(sweep, n_boot=0, n_starts=4, progress=False)
    assert fit.plateaus == {} and list(fit.plateau_skipped) == ["lstm"]
    text = "\n".join(position_section(fit, PLOTS))
    assert (
        "every transformer run learned nothing" in text and "0.75 nats above its unigram entropy 5.5" in text
    )
    assert "No `transformer` runs" not in text and "No compared run saved" not in text


def test_an_architecture_that_learned_nothing_is_named_not_dropped(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    _transformers(sweep, loss=3.0)
    for tokens in (30_000, 300_000):
        name = f"minlstm-x-{tokens}"
        save_record(sweep / name / "result.json",
                    rec(name, arch="minlstm", tokens=tokens, loss=5.5 + tokens / 1e6, unigram_entropy=5.5))  # fmt: skip
    fit = fit_sweep(sweep, n_boot=0, n_starts=4, progress=False)
    assert list(fit.plateau_skipped) == ["minlstm"]
    text = "\n".join(position_section(fit, PLOTS))
    assert "- **minlstm**: not compared with transformer: every minlstm run learned nothing" in text
    assert "`minlstm-x-30000`, ends at 5.53 nats, 0.03 nats above" in text


def test_a_sweep_without_the_reference_does_not_blame_missing_files(tmp_path: Path) -> None:
    """One LSTM family and no Transformer (an architecture's own learning-rate scan): nothing is compared, and the
    section says why, not that no run saved per-token losses."""
    sweep = tmp_path / "sweep"
    write_sweep(sweep)
    fit = fit_sweep(sweep, n_boot=0, n_starts=4, progress=False)
    assert fit.plateaus == {} and not fit.plateau_skipped
    text = "\n".join(position_section(fit, PLOTS))
    assert "No `transformer` runs, so no position comparison." in text and "No compared run saved" not in text
