"""DeepSpeed ZeRO-1/2/3 for real: 2 CPU processes over gloo through `CPUDeepSpeedStrategy`, compared with DDP.

Tolerance: ZeRO and DDP apply the same averaged gradient to the same fp32 weights; only the summation order of the
reduce(-scatter) differs, so per-step losses agree to ~1e-6 relative. We allow 1e-4 (4 steps of drift, with room).
Every run is a separate `tests/integration/deepspeed_worker.py` launch (Lightning starts rank 1), cached per module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pipeline.config import ConfigError
from pipeline.training.logged_metrics import read_metric
from tests.conftest import ROOT, TINY, tiny_config, tiny_overrides

WORKER = ROOT / "tests/integration/deepspeed_worker.py"
# constant LR: a resumed half must see the schedule of the straight run; checkpoints every 2 steps for resume
COMMON = ("train.max_steps=4", "train.val_every=2", "train.bleu_samples=0", "optim.schedule=constant")
LOSS_RTOL = 1e-4


def _env() -> dict[str, str]:
    # DeepSpeed JIT-compiles its CPU shared-memory comm op with g++ on first use; cache it like the Makefile does
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache/torch_extensions"))
    return env


def launch(
    data: Path, run: Path, arch: str, *extra: str, resume: str = "never"
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(WORKER), f"--resume={resume}", *[f"--config={p}" for p in TINY]]
    cmd += [
        f"--config={ROOT}/configs/tiny/{arch}.yaml",
        *tiny_overrides(data, run, "train.devices=2", *COMMON, *extra),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env(), cwd=run.parent)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def runs(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """`runs(name, arch, *overrides) -> run_dir`: each distinct run is trained once per module."""
    root = tmp_path_factory.mktemp("ds")
    done: dict[str, Path] = {}

    def get(name: str, arch: str, *extra: str) -> Path:
        if name not in done:
            launch(tiny_data, root / name, arch, *extra)
            done[name] = root / name
        return done[name]

    return get


def zero(stage: int, *extra: str) -> tuple[str, ...]:
    return ("train.strategy=deepspeed", f"train.zero_stage={stage}", *extra)


def rank_state(run: Path, rank: int) -> dict[str, int]:
    return json.loads((run / f"rank{rank}.json").read_text())


def assert_same_losses(a: Path, b: Path) -> None:
    for column in ("train/loss", "valid/loss"):
        la, lb = read_metric(a, column), read_metric(b, column)
        assert la.keys() == lb.keys() and la, f"{column}: logged steps differ: {sorted(la)} vs {sorted(lb)}"
        for step in la:
            assert lb[step] == pytest.approx(la[step], rel=LOSS_RTOL), f"{column} differs at step {step}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "arch", "extra"),
    [
        # ZeRO-2 against DDP, its optimizer offloaded to the CPU: test_lm_task.py (a Transformer LM)
        (1, "transformer", ()),
        (3, "lstm", ("train.bleu_samples=2",)),  # ZeRO-3 + decoding at the end (parameters gathered for it)
        (3, "lstm_no_cell_residual", ()),  # the ablations: the custom cell's hand-written backward
        (3, "minlstm", ()),  # and the parallel scan, on partitioned parameters
        # the Newton solver on partitioned weights, against the sequential LSTM under DDP
        (3, "lstm", ("model.recurrence=newton",)),
    ],
)
def test_zero_stage_matches_ddp(runs, stage: int, arch: str, extra: tuple[str, ...]) -> None:
    ddp = runs(f"ddp-{arch}", arch, "train.strategy=ddp")
    ds = runs("-".join([f"zero{stage}-{arch}", *extra]), arch, *zero(stage, *extra))
    assert_same_losses(ddp, ds)
    effective = json.loads((ds / "deepspeed_config.json").read_text())
    assert effective["zero_optimization"]["stage"] == stage and effective["gradient_clipping"] == 1.0
    assert ("offload_optimizer" in effective["zero_optimization"]) == (
        "train.offload_optimizer=true" in extra
    )
    for run in (ddp, ds):  # every rank tore its process group down before exiting
        assert [rank_state(run, r)["process_group_left"] for r in (0, 1)] == [False, False]
    summary = json.loads((ds / "summary.json").read_text())
    assert summary["params"] == json.loads((ddp / "summary.json").read_text())["params"] > 0
    if "train.bleu_samples=2" in extra:
        assert summary["decoded_pairs"] == 2 and 0 <= summary["bleu"] <= 100
    if stage == 3:  # parameters and optimizer state are partitioned: each of 2 ranks holds about half
        ddp_bytes = rank_state(ddp, 0)["param_bytes"] + rank_state(ddp, 0)["optimizer_bytes"]
        for rank in (0, 1):
            held = rank_state(ds, rank)
            ratio = (held["param_bytes"] + held["optimizer_bytes"]) / ddp_bytes
            assert ratio == pytest.approx(0.5, abs=0.01), f"rank {rank} holds {ratio:.3f} of DDP's state"
            assert held["master_bytes"] == pytest.approx(rank_state(ddp, 0)["param_bytes"] / 2, rel=0.01)


@pytest.mark.slow
def test_residual_lstm_trains_under_zero3_and_export_matches_sharded_validation(runs, tmp_path: Path) -> None:
    """ZeRO-3 partitions the LSTM weights too; `pipeline export` -> plain model reproduces the sharded valid loss."""
    from pipeline.export import load_exported
    from pipeline.training.datamodule import StreamingDataModule
    from pipeline.training.module import seq2seq_loss

    run = runs("zero3-residual_lstm", "residual_lstm", *zero(3))
    losses = read_metric(run, "train/loss")
    assert sorted(losses) == [0, 1, 2, 3] and all(0 < v < 20 for v in losses.values())
    out = tmp_path / "fp32.pt"
    proc = subprocess.run([sys.executable, "-m", "pipeline", "export", str(run), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env=_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    model, cfg = load_exported(out)
    assert (
        cfg.model["arch"] == "residual_lstm"
        and model.num_params() == json.loads((run / "summary.json").read_text())["params"]
    )
    # the sharded run validated `val_batches` batches on each of its 2 ranks; evaluate the same ones
    model.eval()
    nll = tokens = 0.0
    for rank in (0, 1):
        dm = StreamingDataModule(cfg)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        for _, batch in zip(range(cfg.train.val_batches), dm.val_dataloader(), strict=False):
            with torch.no_grad():
                logits = model(batch["src"], batch["src_mask"], batch["tgt_in"])
            _, batch_nll, n = seq2seq_loss(logits, batch["tgt_out"])
            nll, tokens = nll + batch_nll.item(), tokens + n.item()
    last_valid = read_metric(run, "valid/loss")[3]
    assert nll / tokens == pytest.approx(last_valid, rel=1e-5)
    # `pipeline evaluate` reads the sharded checkpoint directory directly
    proc = subprocess.run([sys.executable, "-m", "pipeline", "evaluate", str(run), "--pairs", "2"],
                          capture_output=True, text=True, timeout=120, env=_env())  # fmt: skip
    assert proc.returncode == 0 and json.loads(proc.stdout[proc.stdout.index("{") :])["decoded_pairs"] == 2, (
        proc.stderr
    )


@pytest.mark.slow
def test_zero3_resume_continues_the_loss_curve(runs, tiny_data: Path, tmp_path: Path) -> None:
    """4 straight steps == 2 steps, stop, resume from the sharded checkpoint, 2 more (same losses)."""
    # the same run (and cache key) as test_zero_stage_matches_ddp's ZeRO-3 LSTM case: trained once per module
    straight = runs("zero3-lstm-train.bleu_samples=2", "lstm", *zero(3, "train.bleu_samples=2"))
    split = tmp_path / "split"
    launch(tiny_data, split, "lstm", *zero(3), "train.max_steps=2")
    assert (split / "checkpoints/last.ckpt").is_dir(), "ZeRO checkpoints are directories"
    launch(tiny_data, split, "lstm", *zero(3), resume="auto")
    a, b = read_metric(straight, "train/loss"), read_metric(split, "train/loss")
    assert sorted(b) == [0, 1, 2, 3]
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5), f"loss differs at step {step} after resume"
    assert rank_state(split, 0)["step"] == 4


@pytest.mark.slow
def test_resume_on_one_rank_from_two_rank_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    """Refused at once with the conversion recipe; after `pipeline export --universal` it resumes on 1 rank."""
    from pipeline.export import is_universal
    from pipeline.training.deepspeed_strategy import ZeroResumeError
    from pipeline.training.trainer import fit

    run = tmp_path / "run"
    launch(tiny_data, run, "lstm", *zero(2), "train.max_steps=2")
    one_rank = (*COMMON, *zero(2), "train.devices=1")
    with pytest.raises(
        ZeroResumeError, match=r"written by 2 data-parallel ranks, this run has 1.*--universal"
    ):
        fit(
            tiny_config("lstm", tiny_data, run, *one_rank), resume="auto"
        )  # no process group was ever started

    proc = subprocess.run([sys.executable, "-m", "pipeline", "export", str(run), "--universal"],
                          capture_output=True, text=True, timeout=120, env=_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [is_universal(p) for p in (run / "checkpoints").glob("*-universal.ckpt")] == [True]
    with pytest.raises(ZeroResumeError, match="load_universal"):
        fit(tiny_config("lstm", tiny_data, run, *one_rank), resume="auto")

    switch = tmp_path / "universal.json"
    switch.write_text(json.dumps({"checkpoint": {"load_universal": True}}))
    cmd = [sys.executable, str(WORKER), "--resume=auto", *[f"--config={p}" for p in TINY],
           f"--config={ROOT}/configs/tiny/lstm.yaml",
           *tiny_overrides(tiny_data, run, *one_rank, f"train.deepspeed_config={switch}")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert sorted(read_metric(run, "train/loss")) == [0, 1, 2, 3]
    state = rank_state(run, 0)
    assert state["world_size"] == 1 and state["step"] == 4
    # the optimizer state was carried over (Adam counted 4 steps, not 2 from a restart)
    optim = torch.load(
        run / "checkpoints/last.ckpt/checkpoint/zero_pp_rank_0_mp_rank_00_optim_states.pt", weights_only=False
    )
    steps = {int(s["step"]) for s in optim["optimizer_state_dict"]["base_optimizer_state"]["state"].values()}
    assert steps == {4}
    assert not list((run / "checkpoints/last.ckpt/checkpoint").glob("zero_pp_rank_1_*")), (
        "stale 2-rank shard kept"
    )


def test_generated_config_follows_run_config_and_user_json(tiny_data: Path, tmp_path: Path) -> None:
    from pipeline.training.deepspeed_strategy import build_deepspeed_strategy, effective_config

    cfg = tiny_config("lstm", tiny_data, tmp_path / "r", *zero(3, "train.offload_optimizer=true"),
                      "train.accumulate=4", "optim.grad_clip=0.5", "train.precision=bf16-mixed")  # fmt: skip
    got = effective_config(cfg, "gpu")
    assert got["gradient_accumulation_steps"] == 4 and got["gradient_clipping"] == 0.5
    assert got["bf16"] == {"enabled": True} and got["zero_optimization"]["stage"] == 3
    assert got["zero_optimization"]["offload_optimizer"]["device"] == "cpu"

    user = tmp_path / "ds.json"
    user.write_text(
        json.dumps({"zero_optimization": {"reduce_bucket_size": 123}, "bf16": {"enabled": False}})
    )
    cfg.train.deepspeed_config = str(user)
    strategy = build_deepspeed_strategy(cfg, "cpu")
    saved = json.loads((tmp_path / "r/deepspeed_config.json").read_text())
    assert (
        saved["zero_optimization"]["reduce_bucket_size"] == 123 and saved["zero_optimization"]["stage"] == 3
    )
    assert saved["bf16"] == {"enabled": False} and saved["gradient_accumulation_steps"] == 4
    assert type(strategy).__name__ == "CPUDeepSpeedStrategy"
    assert "gradient_accumulation_steps" not in strategy.config  # Lightning sets it from train.accumulate

    for bad, match in [({"zero_optimization": {"stage": 1}}, "train.zero_stage"),
                       ({"gradient_accumulation_steps": 2}, "train.accumulate"), ([1], "must be a mapping")]:  # fmt: skip
        user.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=match):
            effective_config(cfg, "cpu")
    user.write_text("{not json")
    with pytest.raises(ConfigError, match=r"ds.json is not valid JSON"):
        effective_config(cfg, "cpu")
