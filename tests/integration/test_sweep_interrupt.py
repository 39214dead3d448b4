"""A local sweep that gets SIGTERM (scancel, kill, a preempted allocation) stops: the run in progress checkpoints,
no later run starts, nothing is recorded as failed, and the same command resumes where it stopped."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import pytest

from pipeline.cli import main as cli
from tests.integration.test_sweep import write_grid


class SigtermAtStep(L.Callback):
    """Sends this process SIGTERM once training reaches `step`, as `kill PID` would from outside."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_stops_the_sweep_and_the_rerun_resumes(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.training.trainer

    real_fit = pipeline.training.trainer.fit

    def fit_with_sigterm(cfg, *args, extra_callbacks=(), **kwargs):
        if cfg.model["arch"] == "lstm":
            extra_callbacks = [*extra_callbacks, SigtermAtStep(2)]
        return real_fit(cfg, *args, extra_callbacks=extra_callbacks, **kwargs)

    grid = write_grid(tmp_path / "grid.yaml", tiny_data)
    out = tmp_path / "s"
    argv = ["sweep", "--grid", str(grid), "--out", str(out), "--only", "lstm-d16", "--only", "mer-d16"]
    monkeypatch.setattr(pipeline.training.trainer, "fit", fit_with_sigterm)
    assert cli(argv) == 128 + signal.SIGTERM
    printed = capsys.readouterr().out
    assert "stopped" in printed and "rerun the same command to resume" in printed
    stopped = out / "lstm-d16-1500"
    assert (stopped / "checkpoints" / "last.ckpt").is_file()
    assert not (stopped / "error.txt").exists() and not (stopped / "result.json").exists()
    assert not (out / "residual_lstm-d16-1500").exists()  # the next run never started
    assert not (out / "transformer-d16-1500").exists()

    monkeypatch.setattr(pipeline.training.trainer, "fit", real_fit)
    assert cli(argv) == 0
    assert "3 trained, 0 already finished, 0 failed" in capsys.readouterr().out
    for name in ("lstm-d16-1500", "residual_lstm-d16-1500", "transformer-d16-1500"):
        assert (out / name / "result.json").is_file()


def test_a_run_dir_without_its_checkpoints_starts_again_and_keeps_the_old_files(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sweep committed or copied mid-run arrives without `checkpoints/` (gitignored): the run cannot resume, so
    the sweep trains it from step 0 instead of stopping with `pipeline train`'s refusal, and moves the old files
    aside rather than deleting them."""
    grid = write_grid(tmp_path / "grid.yaml", tiny_data)
    out = tmp_path / "s"
    stale = out / "lstm-d16-1500"
    stale.mkdir(parents=True)
    (stale / "valid_token_losses.npz").write_bytes(b"from an attempt that never finished")
    assert cli(["sweep", "--grid", str(grid), "--out", str(out), "--only", "^lstm-d16"]) == 0
    captured = capsys.readouterr()
    assert "1 trained, 0 already finished, 0 failed" in captured.out
    assert "no checkpoints/ to resume from" in captured.err and "valid_token_losses.npz" in captured.err
    assert (stale / "result.json").is_file()
    [kept] = stale.glob("previous-*/valid_token_losses.npz")
    assert kept.read_bytes() == b"from an attempt that never finished"
