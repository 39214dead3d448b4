"""Damaged run directories and runs that go wrong: never lose a run silently, never hang.

One tiny LSTM run (checkpoints at steps 2, 4, 6 and last.ckpt) is trained once and copied for each case. Each
damage (generated: kind x scope) must end in a refusal naming every file and why, or in a fallback with a warning
naming the damaged file; never a traceback, a silent restart, or changed files. Then: a foreign checkpoint, an
explicit `--resume fresh`, a non-finite loss, and SIGTERM while the loader is stuck (a real subprocess).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from pipeline.cli import main as cli
from pipeline.training.checkpoint_files import (
    ResumeError,
    find_resume_checkpoint,
    list_checkpoints,
    meta_path,
    resume_checkpoint,
    verify,
    write_metadata,
)
from pipeline.training.logged_metrics import metrics_files
from tests.conftest import ROOT, TINY, tiny_config
from tests.integration.conftest import TRAIN

NEWEST = ("last.ckpt", "step=6.ckpt")  # both hold step 6


def copy_run(trained: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    return run


def train_argv(data: Path, run: Path, *extra: str) -> list[str]:
    configs = [f"--config={p}" for p in [*TINY, ROOT / "configs/tiny/lstm.yaml"]]
    return ["train", *configs, f"data.dir={data}", f"run_dir={run}", *TRAIN, *extra]


def snapshot(run: Path) -> dict[str, str]:
    """sha256 of every file under the run directory: what a refusal must leave untouched."""
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in run.rglob("*")
        if p.is_file()
    }


# --- damage, generated: each kind applied to the newest checkpoint(s) or to all of them ----------------------
def _flip_byte(ckpt: Path) -> None:
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))


def _rewrite_meta(ckpt: Path, **changes: object) -> None:
    meta = json.loads(meta_path(ckpt).read_text())
    meta.update(changes)
    meta_path(ckpt).write_text(json.dumps(meta))


def _replace_by_directory(ckpt: Path) -> None:
    ckpt.unlink()
    ckpt.mkdir()


def truncate_with_matching_sidecar(ckpt: Path) -> None:
    """Cut in half, and a sidecar rewritten to match (sha256 and size of the cut file): only the contents tell."""
    meta = json.loads(meta_path(ckpt).read_text())
    os.truncate(ckpt, ckpt.stat().st_size // 2)
    write_metadata(ckpt, meta["step"], meta["tokens"], meta["config_hash"], meta["world_size"])


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {  # kind -> (damage one checkpoint, reason printed)
    "sidecar_deleted": (lambda c: meta_path(c).unlink(), "no metadata sidecar"),
    "truncated_half": (lambda c: os.truncate(c, c.stat().st_size // 2), "truncated"),
    "truncated_empty": (lambda c: os.truncate(c, 0), "truncated"),
    "byte_flipped": (_flip_byte, "checksum mismatch"),
    "bytes_appended": (lambda c: c.write_bytes(c.read_bytes() + b"junk"), "truncated or changed"),
    "sidecar_garbage": (lambda c: meta_path(c).write_text("{not json"), "unreadable metadata"),
    "sidecar_binary": (lambda c: meta_path(c).write_bytes(b"\xff\xfe\x00\x01"), "unreadable metadata"),
    "sidecar_without_checksum": (lambda c: meta_path(c).write_text('{"step": 6}'), "lacks its checksum"),
    "sidecar_wrong_size": (lambda c: _rewrite_meta(c, bytes=1), "truncated or changed"),
    "replaced_by_directory": (_replace_by_directory, "truncated or changed"),
    "truncated_sidecar_rewritten": (truncate_with_matching_sidecar, "not a readable checkpoint"),
    "sidecar_claims_step_99": (lambda c: _rewrite_meta(c, step=99), "metadata says step 99"),
}


def damage(run: Path, kind: str, names: list[str]) -> None:
    apply, _ = DAMAGES[kind]
    for name in names:
        apply(run / "checkpoints" / name)


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_every_checkpoint_damaged_is_refused_naming_each_and_changes_nothing(
    kind: str, trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(trained, tmp_path)
    damage(run, kind, [p.name for p in list_checkpoints(run)])
    before = snapshot(run)
    assert cli(train_argv(tiny_data, run)) == 2
    err = capsys.readouterr().err
    assert "error: --resume auto: none of the 4 checkpoint(s)" in err and "Traceback" not in err
    for ckpt in list_checkpoints(run):
        assert f"{ckpt}: " in err, f"{ckpt.name} not named"
    assert err.count(DAMAGES[kind][1]) >= 4
    assert "--resume fresh" in err
    assert snapshot(run) == before, "a refused resume changed the run directory"


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_damaged_newest_checkpoint_falls_back_with_a_warning(
    kind: str, trained: Path, tiny_data: Path, tmp_path: Path
) -> None:
    run = copy_run(trained, tmp_path)
    damage(run, kind, list(NEWEST))
    messages: list[str] = []
    chosen = resume_checkpoint("auto", tiny_config("lstm", tiny_data, run, *TRAIN), report=messages.append)
    assert chosen == run / "checkpoints/step=4.ckpt"
    for name in NEWEST:
        assert any(str(run / "checkpoints" / name) in m and DAMAGES[kind][1] in m for m in messages), messages


def test_an_older_checkpoint_claiming_a_later_step_is_skipped_with_a_warning(
    trained: Path, tiny_data: Path, tmp_path: Path
) -> None:
    """step=2.ckpt's sidecar edited to say step 99: it sorted first and the run silently went back to step 2."""
    run = copy_run(trained, tmp_path)
    _rewrite_meta(run / "checkpoints/step=2.ckpt", step=99)
    messages: list[str] = []
    chosen = resume_checkpoint("auto", tiny_config("lstm", tiny_data, run, *TRAIN), report=messages.append)
    assert chosen in (run / "checkpoints/last.ckpt", run / "checkpoints/step=6.ckpt")
    assert any(
        str(run / "checkpoints/step=2.ckpt") in m and "says step 99 but the checkpoint holds step 2" in m
        for m in messages
    ), messages


def test_fallback_resume_trains_on_and_max_steps_may_change(
    trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(trained, tmp_path)
    damage(run, "byte_flipped", list(NEWEST))
    assert cli(train_argv(tiny_data, run, "train.max_steps=8")) == 0  # max_steps is not an identity key
    err = capsys.readouterr().err
    assert f"not resuming from {run / 'checkpoints/last.ckpt'}: checksum mismatch" in err
    assert json.loads((run / "summary.json").read_text())["steps"] == 8
    meta, _ = verify(run / "checkpoints/last.ckpt")
    assert meta is not None and meta["step"] == 8
    assert len(metrics_files(run)) == 2  # a resumed run, not a restart over the old logs


@pytest.mark.parametrize(
    "case",
    ["checkpoints_dir_deleted", "checkpoints_deleted_sidecars_left", "mixed_damage"],
)
def test_lost_checkpoints_are_refused(
    case: str, trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(trained, tmp_path)
    ckpts = list_checkpoints(run)
    if case == "checkpoints_dir_deleted":
        shutil.rmtree(run / "checkpoints")
        expected = ["no checkpoints/ directory", "config.yaml", "csv", "summary.json"]
    elif case == "checkpoints_deleted_sidecars_left":
        for ckpt in ckpts:
            ckpt.unlink()
        expected = ["sidecar(s)", "last.ckpt.meta.json", "but none of their checkpoints"]
    else:  # every checkpoint damaged differently: each named with its own reason
        kinds = ["sidecar_deleted", "truncated_half", "byte_flipped", "sidecar_garbage"]
        for ckpt, kind in zip(ckpts, kinds, strict=True):
            DAMAGES[kind][0](ckpt)
        expected = [f"{c}: " for c in ckpts] + [DAMAGES[k][1] for k in kinds]
    before = snapshot(run)
    assert cli(train_argv(tiny_data, run)) == 2
    err = capsys.readouterr().err
    assert err.startswith("pipeline train: error: ") or "\npipeline train: error: " in err
    assert "Traceback" not in err and "--resume fresh" in err
    for text in expected:
        assert text in err, f"{text!r} missing from: {err}"
    assert snapshot(run) == before


def test_empty_checkpoints_dir_with_logs_warns_and_starts_at_step_0(
    trained: Path, tiny_data: Path, tmp_path: Path
) -> None:
    """A start killed before its first checkpoint leaves logs and an empty checkpoints/: that is no lost run."""
    run = copy_run(trained, tmp_path)
    for ckpt in list_checkpoints(run):
        ckpt.unlink()
        meta_path(ckpt).unlink()
    messages: list[str] = []
    assert resume_checkpoint("auto", tiny_config("lstm", tiny_data, run, *TRAIN), messages.append) is None
    assert any("no checkpoint in" in m and "starting at step 0" in m for m in messages)


def test_foreign_architecture_checkpoint_is_refused_naming_the_keys(
    trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An LSTM run's checkpoints copied into a Transformer run's directory (no config.yaml came along)."""
    run = copy_run(trained, tmp_path)
    (run / "config.yaml").unlink()
    argv = train_argv(tiny_data, run)
    argv[2] = f"--config={ROOT / 'configs/tiny/transformer.yaml'}"
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert "different model/data config; refusing to resume from it" in err and "Traceback" not in err
    assert "model: {'arch': 'lstm'" in err and "'arch': 'transformer'" in err
    assert str(run / "checkpoints/last.ckpt") in err


def test_foreign_config_hash_in_sidecar_is_refused(trained: Path, tiny_data: Path, tmp_path: Path) -> None:
    run = copy_run(trained, tmp_path)
    (run / "config.yaml").unlink()
    cfg = tiny_config("lstm", tiny_data, run, *TRAIN, "model.d_model=48")
    with pytest.raises(
        ResumeError, match=r"last\.ckpt was written by .*\n  model: .*'d_model': 32.*'d_model': 48"
    ):
        resume_checkpoint("auto", cfg)


@pytest.mark.parametrize(
    "case", ["corrupt_path", "missing_path", "saved_config_garbage", "run_dir_is_a_file"]
)
def test_explicit_and_odd_states_are_one_line_errors(
    case: str, trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(trained, tmp_path)
    extra: list[str] = []
    if case == "corrupt_path":
        os.truncate(run / "checkpoints/step=4.ckpt", 100)
        extra, named = ["--resume", str(run / "checkpoints/step=4.ckpt")], "step=4.ckpt: truncated"
    elif case == "missing_path":
        extra, named = ["--resume", str(tmp_path / "nope.ckpt")], "nope.ckpt: no such checkpoint"
    elif case == "saved_config_garbage":
        (run / "config.yaml").write_text("model: [unclosed\n")
        named = f"{run / 'config.yaml'}: unreadable saved config"
    else:
        shutil.rmtree(run)
        run.write_text("not a directory")
        named = str(run)
    argv = train_argv(tiny_data, run)
    assert cli(argv[:1] + extra + argv[1:]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and named in err and "Traceback" not in err


def test_resume_fresh_moves_the_damaged_state_aside_and_trains(
    trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(trained, tmp_path)
    damage(run, "sidecar_deleted", [p.name for p in list_checkpoints(run)])
    before = snapshot(run)
    assert cli(train_argv(tiny_data, run)[:1] + ["--resume", "fresh"] + train_argv(tiny_data, run)[1:]) == 0
    err = capsys.readouterr().err
    (previous,) = run.glob("previous-*")
    assert f"moved the previous state of {run} to {previous}" in err
    moved = {k.split("/", 1)[1]: v for k, v in snapshot(run).items() if k.startswith(previous.name)}
    assert moved == before, "the previous state was not kept byte for byte"
    assert find_resume_checkpoint(run) is not None and len(metrics_files(run)) == 1


# --- non-finite losses ------------------------------------------------------------------------------------------
@pytest.fixture
def nan_at_step_3(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training loss of the 3rd optimizer step is NaN (and back-propagates NaN gradients)."""
    import pipeline.training.module as module

    real, calls = module.seq2seq_train_loss, []

    def loss(*args, **kwargs):
        calls.append(1)
        out = real(*args, **kwargs)
        return out * float("nan") if len(calls) == 3 else out

    monkeypatch.setattr(module, "seq2seq_train_loss", loss)


def _all_finite(ckpt: Path) -> bool:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    return all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def test_non_finite_loss_stops_the_run_naming_the_step(
    nan_at_step_3: None, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert cli(train_argv(tiny_data, run)) == 1
    err = capsys.readouterr().err
    assert "error: non-finite training loss (nan) at optimizer step 3 of 6" in err and "Traceback" not in err
    assert not (run / "summary.json").exists()
    steps = [json.loads(p.read_text())["step"] for p in (run / "checkpoints").glob("*.meta.json")]
    assert steps and max(steps) <= 2, "a checkpoint after the NaN step was marked complete"
    assert _all_finite(find_resume_checkpoint(run))


def test_allowed_non_finite_step_is_skipped_with_a_warning(
    nan_at_step_3: None, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert cli(train_argv(tiny_data, run, "train.max_nonfinite_steps=1")) == 0
    err = capsys.readouterr().err
    assert "non-finite training loss (nan) at optimizer step 3 of 6" in err and "step skipped (1 of" in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 and math.isfinite(summary["valid_loss"])
    assert _all_finite(run / "checkpoints/last.ckpt")


# --- SIGTERM while the loader is stuck ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["block", "spin"])
def test_sigterm_ends_a_run_whose_loader_is_stuck(mode: str, tiny_data: Path, tmp_path: Path) -> None:
    run, marker = tmp_path / "run", tmp_path / "stalled"
    argv = train_argv(tiny_data, run, "train.max_steps=20")[1:]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PIPELINE_STOP_TIMEOUT": "2"}
    script = Path(__file__).with_name("stalling_train.py")
    proc = subprocess.Popen([sys.executable, str(script), mode, str(marker), *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.time() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.time() < deadline, "the stream never stalled"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)  # without the watchdog: no step boundary ever comes, a hang
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err[-3000:]
    assert "SIGTERM: no step boundary within 2 s" in err
    # saved what was safe: the step-4 checkpoint, written whole before the stall, is complete and resumable
    assert find_resume_checkpoint(run) is not None
    assert json.loads(meta_path(run / "checkpoints/step=4.ckpt").read_text())["step"] == 4
