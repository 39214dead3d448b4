"""End-to-end training through `fit` / the CLI: all architectures, checkpoints, resume, DDP, errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.training.logged_metrics import read_metric
from pipeline.training.trainer import fit
from tests.conftest import ROOT, TINY, tiny_config, tiny_overrides

PIPELINE = [sys.executable, "-m", "pipeline"]


@pytest.mark.parametrize("arch", ["lstm", "residual_lstm", "transformer"])
def test_each_architecture_trains_evaluates_and_checkpoints(
    arch: str, tiny_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / arch
    summary = fit(tiny_config(arch, tiny_data, run))
    assert summary["steps"] == 6
    assert math.isfinite(summary["valid_loss"]) and summary["valid_loss"] > 0
    assert summary["params"] > summary["non_embedding_params"] > 0
    assert 0 <= summary["bleu"] <= 100 and summary["decoded_pairs"] == 4
    assert summary["tokens"] > 0
    assert (run / "checkpoints/last.ckpt").exists() and (run / "config.yaml").exists()
    assert json.loads((run / "summary.json").read_text())["arch"] == arch
    # Lightning's CSV "step" is 0-based: the k-th optimizer step logs at k-1; validation ran after steps 3 and 6
    assert list(read_metric(run, "train/loss")) == [0, 1, 2, 3, 4, 5]
    assert list(read_metric(run, "valid/loss")) == [2, 5]
    assert len(summary["loss_by_position"]) == 33


def test_resume_continues_step_count_optimizer_and_data(tiny_data: Path, tmp_path: Path) -> None:
    """8 straight steps == 4 steps, stop, resume to 8: same step count, optimizer state, losses and weights."""
    # constant LR: a cosine schedule would depend on max_steps, which the interrupted half changes
    extra = ("train.val_every=4", "train.deterministic=true", "train.bleu_samples=0", "train.max_steps=8",
             "optim.schedule=constant")  # fmt: skip
    straight = tmp_path / "straight"
    fit(tiny_config("lstm", tiny_data, straight, *extra))
    split = tmp_path / "split"
    first = fit(tiny_config("lstm", tiny_data, split, *extra, "train.max_steps=4"))
    assert first["steps"] == 4
    second = fit(tiny_config("lstm", tiny_data, split, *extra), resume="auto")
    assert second["steps"] == 8

    a = torch.load(straight / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    b = torch.load(split / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert a["global_step"] == b["global_step"] == 8
    adam_steps = {int(s["step"]) for s in b["optimizer_states"][0]["state"].values()}
    assert adam_steps == {8}, "optimizer state restarted instead of continuing"
    assert b["lr_schedulers"][0]["last_epoch"] == 8
    la, lb = read_metric(straight, "train/loss"), read_metric(split, "train/loss")
    assert sorted(lb) == sorted(la), "logged steps have a gap or a duplicate"
    for step in la:
        assert la[step] == pytest.approx(lb[step], rel=1e-6, abs=1e-7), (
            f"loss differs at step {step}: data position lost?"
        )
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=1e-5, atol=1e-6)


def test_resume_refuses_changed_model(tiny_data: Path, tmp_path: Path) -> None:
    from pipeline.config import ConfigError

    run = tmp_path / "run"
    fit(tiny_config("lstm", tiny_data, run, "train.max_steps=2", "train.bleu_samples=0"))
    with pytest.raises(ConfigError, match=r"model: .*'d_model': 32.*'d_model': 48"):
        fit(tiny_config("lstm", tiny_data, run, "train.max_steps=4", "model.d_model=48"), resume="auto")


@pytest.mark.slow
def test_ddp_two_processes_end_with_identical_weights(tiny_data: Path, tmp_path: Path) -> None:
    """`pipeline train train.devices=2` on CPU: Lightning launches a 2nd process, gloo all-reduces the gradients."""
    run = tmp_path / "ddp"
    script = ROOT / "tests/integration/save_rank_weights.py"
    cmd = [
        sys.executable,
        str(script),
        *[f"--config={p}" for p in TINY],
        f"--config={ROOT}/configs/tiny/transformer.yaml",
    ]
    cmd += tiny_overrides(tiny_data, run, "train.devices=2", "train.bleu_samples=0", "train.max_steps=4")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(run / "rank0_weights.pt")
    w1 = torch.load(run / "rank1_weights.pt")
    assert w0.keys() == w1.keys()
    for key in w0:
        assert torch.equal(w0[key], w1[key]), f"ranks diverged on {key}"
    initial = torch.load(run / "rank0_initial.pt")
    assert any(not torch.equal(initial[k], w0[k]) for k in w0), "weights did not train"
    assert json.loads((run / "ranks.json").read_text()) == {"world_size": 2, "ranks": [0, 1]}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*PIPELINE, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip


def test_cli_errors_name_the_problem(tmp_path: Path) -> None:
    base = str(ROOT / "configs/tiny/base.yaml")
    proc = run_cli("train", "--config", base, "model.arch=gru", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown model arch 'gru'" in proc.stderr
    proc = run_cli("train", "--config", base, "train.max_stepz=3", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown key 'train.max_stepz'" in proc.stderr
    proc = run_cli("data", "prepare", "--src", str(tmp_path / "missing.en"), "--tgt", str(tmp_path / "missing.fr"),
                   "--out", str(tmp_path / "d"), cwd=tmp_path)  # fmt: skip
    assert proc.returncode != 0 and "missing.en" in proc.stderr
    lstm = str(ROOT / "configs/tiny/lstm.yaml")
    proc = run_cli("train", "--config", base, "--config", lstm, f"data.dir={tmp_path / 'nodata'}", "data.corpus=bible:4-z",
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "'z'" in proc.stderr, proc.stderr[-2000:]


def test_grad_reach_is_logged_during_training(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "reach"
    fit(tiny_config("lstm", tiny_data, run, "train.grad_reach_every=2", "train.bleu_samples=0"))
    records = [json.loads(line) for line in (run / "grad_by_position.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert all(len(r["tgt"]) > 1 and len(r["src"]) > 1 for r in records)
    assert read_metric(run, "grad_reach/tgt_first_over_last")
