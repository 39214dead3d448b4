"""Fault injection with real processes: kill -9, SIGUSR1, a truncated checkpoint, a world-size change, a corrupt
shard. An interrupted and resumed run must end with the same model as an uninterrupted one, bit for bit (CPU,
deterministic mode, dropout on so the RNG state matters), and its merged log must have no gap or duplicate."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pipeline.training.checkpoint_files import find_resume_checkpoint, meta_path
from pipeline.training.logged_metrics import metrics_files, read_metric
from tests.conftest import ROOT, TINY

MAX_STEPS = 40
ARGS = (
    "train.max_steps=40", "train.ckpt_every=4", "train.val_every=20", "train.deterministic=true",
    "train.bleu_samples=0", "model.dropout=0.1", "train.log_every=1",
)  # fmt: skip
pytestmark = pytest.mark.slow


def train_cmd(data: Path, run: Path, *extra: str) -> list[str]:
    configs = [f"--config={p}" for p in [*TINY, ROOT / "configs/tiny/transformer.yaml"]]
    return [
        sys.executable,
        "-m",
        "pipeline",
        "train",
        *configs,
        f"data.dir={data}",
        f"run_dir={run}",
        *ARGS,
        *extra,
    ]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}


def run_to_end(data: Path, run: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        train_cmd(data, run, *extra), capture_output=True, text=True, timeout=300, env=env()
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def start(data: Path, run: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(train_cmd(data, run, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env())  # fmt: skip


def wait_for_checkpoints(run: Path, proc: subprocess.Popen, count: int, timeout: float = 240) -> None:
    """Until `count` periodic checkpoints are complete (their metadata written)."""
    deadline = time.time() + timeout
    while len(list((run / "checkpoints").glob("step=*.ckpt.meta.json"))) < count:
        assert proc.poll() is None, f"run ended before {count} checkpoints: {proc.stderr.read()[-3000:]}"
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.02)


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == MAX_STEPS
    return ckpt["state_dict"]


def assert_same_model_and_log(reference: Path, resumed: Path) -> None:
    a, b = final_weights(reference), final_weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs from the uninterrupted run"
    la, lb = read_metric(reference, "train/loss"), read_metric(resumed, "train/loss")
    assert list(lb) == list(range(MAX_STEPS)), "logged steps have a gap"
    assert lb == la, "logged losses differ from the uninterrupted run"


@pytest.fixture(scope="module")
def uninterrupted(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("reference") / "run"
    run_to_end(tiny_data, run)
    return run


@pytest.mark.parametrize("when", ["random", "at_validation_step", "newer_unverified"])
def test_kill_9_after_a_checkpoint_then_resume_is_bit_exact(
    when: str, tiny_data: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    proc = start(tiny_data, run)
    if when == "random":
        wait_for_checkpoints(run, proc, 1)
        time.sleep(random.Random(os.getpid()).uniform(0.0, 0.5))  # somewhere after the first checkpoint
    elif (
        when == "newer_unverified"
    ):  # killed before step 8's checkpoint was marked complete: resume from step 4
        deadline = time.time() + 240
        while not (run / "checkpoints/step=8.ckpt.meta.json").exists():
            assert proc.poll() is None and time.time() < deadline, "no step-8 checkpoint"
            time.sleep(0.005)
        proc.kill()
        proc.wait()
        for name in ("last.ckpt", "step=8.ckpt"):
            meta_path(run / "checkpoints" / name).unlink()
    else:  # resume from the checkpoint taken at step 20, where the uninterrupted run also validated
        deadline = time.time() + 240
        while not (run / "checkpoints/step=20.ckpt.meta.json").exists():
            assert proc.poll() is None and time.time() < deadline, "no step-20 checkpoint"
            time.sleep(0.005)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL
    run_to_end(tiny_data, run)
    assert not list(run.glob("checkpoints/last-v*.ckpt"))
    assert_same_model_and_log(uninterrupted, run)


def test_sigusr1_checkpoints_at_step_boundary_and_exits_75(
    tiny_data: Path, uninterrupted: Path, tmp_path: Path
):
    run = tmp_path / "run"
    proc = start(tiny_data, run, "logging.wandb=true")
    wait_for_checkpoints(run, proc, 1)
    proc.send_signal(signal.SIGUSR1)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75, stderr[-3000:]
    stopped = json.loads(meta_path(run / "checkpoints/last.ckpt").read_text())["step"]
    assert 4 <= stopped < MAX_STEPS
    wandb_id = (run / "wandb_id").read_text()
    run_to_end(tiny_data, run, "logging.wandb=true")
    assert_same_model_and_log(uninterrupted, run)
    # stopped at a step boundary: the two attempts' CSV logs do not overlap at all
    steps_per_file = [_train_steps(path) for path in metrics_files(run)]
    assert len(steps_per_file) == 2 and not steps_per_file[0] & steps_per_file[1]
    assert max(steps_per_file[0]) == stopped - 1 and min(steps_per_file[1]) == stopped
    # the same W&B run continued (offline): one id, two local run directories for it
    assert (run / "wandb_id").read_text() == wandb_id
    runs = sorted(p.name for p in (run / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(name.endswith(wandb_id) for name in runs)


def test_sigterm_checkpoints_and_exits_143(tiny_data: Path, tmp_path: Path):
    run = tmp_path / "run"
    proc = start(tiny_data, run)
    wait_for_checkpoints(run, proc, 1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]  # not 75: the job script must not requeue after scancel
    assert "SIGTERM: saved" in stderr
    assert json.loads(meta_path(run / "checkpoints/last.ckpt").read_text())["step"] >= 4


def _train_steps(metrics_csv: Path) -> set[int]:
    with metrics_csv.open() as handle:
        return {int(row["step"]) for row in csv.DictReader(handle) if row.get("train/loss")}


def test_truncated_newest_checkpoint_is_reported_and_previous_used(
    tiny_data: Path, uninterrupted: Path, tmp_path: Path
):
    run = tmp_path / "run"
    proc = start(tiny_data, run)
    wait_for_checkpoints(run, proc, 2)
    proc.kill()
    proc.wait()
    newest = find_resume_checkpoint(run)
    assert newest is not None
    with open(newest, "r+b") as handle:  # a half-written file, as a crash during a non-atomic write leaves
        handle.truncate(newest.stat().st_size // 2)
    messages: list[str] = []
    fallback = find_resume_checkpoint(run, report=messages.append)
    assert fallback is not None and fallback != newest
    assert any(str(newest) in m and "truncated" in m for m in messages)
    proc = run_to_end(tiny_data, run)
    assert f"not resuming from {newest}" in proc.stderr
    assert_same_model_and_log(uninterrupted, run)


def test_ddp_checkpoint_resumes_on_one_rank_with_every_sample_once(tiny_data: Path, tmp_path: Path):
    from pipeline.data.stream.loader import build_loader
    from pipeline.data.stream.reshard import consumed_keys

    run = tmp_path / "run"
    common = ("optim.schedule=constant", "model.dropout=0.0")
    run_to_end(tiny_data, run, "train.devices=2", "train.max_steps=8", *common)
    two_rank = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    run_to_end(tiny_data, run, "train.devices=1", "train.max_steps=12", *common)
    one_rank = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert (two_rank["global_step"], one_rank["global_step"]) == (8, 12)
    assert one_rank["optimizer_states"][0]["state"][0]["step"] == 12  # optimizer continued, not restarted
    ranks_before = two_rank["StreamingDataModule"]["train_loader"]["ranks"]
    (after,) = one_rank["StreamingDataModule"]["train_loader"]["ranks"]
    dataset = build_loader(tiny_data, "train", batch_tokens=256, max_len=32, seed=7, bucket_size=64).dataset
    _, before = consumed_keys(dataset, ranks_before)
    epoch, total = consumed_keys(dataset, [after])
    consumed_after = after["workers"]["0"]["samples"]
    assert before[epoch] and before[epoch] <= total[epoch]
    # nothing consumed twice: what the 1-rank run read after the resume is disjoint from what the 2 ranks read
    assert len(total[epoch]) == len(before[epoch]) + consumed_after


def test_corrupt_shard_is_named(tiny_data: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    shard = sorted((data / "train").glob("*.tar"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])
    proc = subprocess.run(
        train_cmd(data, tmp_path / "run"), capture_output=True, text=True, timeout=300, env=env()
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"corrupt shard {shard}" in proc.stderr
