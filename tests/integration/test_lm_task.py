"""One config key (`data.task`) chooses the task: language modelling and passage translation through the same
train, resume, DeepSpeed and sweep paths as translation, and the attention-free arm in a sweep.

LM data here is a text file of English WEB verses (`text:FILE`), prepared in ~2 s; the shipped `bible:4+k+3` corpus
trains its tokenizer on three whole translations (~30 s CPU), too slow for a test.
"""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, ConfigWarning, load_config
from pipeline.data.sources.bible import bible_db_path
from pipeline.data.text import clean_text
from pipeline.data.tokenizer import BOS_ID
from pipeline.training.logged_metrics import read_metric
from pipeline.training.module import Seq2SeqModule
from pipeline.training.run_data import prepare_run_data, target_width
from pipeline.training.trainer import fit
from tests.conftest import ROOT, TINY
from tests.unit.data_fixtures import write_parallel

CONTEXT = 32
RECURRENT = ("lstm", "lstm_no_cell_residual", "minlstm")  # their tiny configs set attention: true
# ZeRO-2 vs DDP LM losses: measured bit-identical (difference 0.0 at all 4 train and 2 valid steps, CPU, 2 ranks,
# fp32). Another machine or library version may sum the two ranks' gradient shards in another order and DeepSpeed
# steps its own fp32 partitions, which moves float32 losses by ~1e-7 relative per step; 1e-5 leaves that a 10-100x
# margin, while a wrong batch, a missed reduction or a skipped step moves the loss by 1e-3 or more from step 1.
LM_ZERO2_RTOL = 1e-5


def lm_overrides(data: Path, run: Path, arch: str, *extra: str) -> list[str]:
    text = data.parent / "web.txt"
    no_source = ["model.attention=false"] if arch in RECURRENT else []
    return [f"data.dir={data}", f"data.corpus=text:{text}", f"data.context={CONTEXT}", "data.limit=120",
            f"run_dir={run}", *no_source, *extra]  # fmt: skip


def lm_config(data: Path, run: Path, arch: str, *extra: str):
    files = [*TINY, ROOT / "configs/tiny/lm.yaml", ROOT / f"configs/tiny/{arch}.yaml"]
    return load_config(files, lm_overrides(data, run, arch, *extra))


@pytest.fixture(scope="module")
def lm_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lm")
    query = "SELECT vText FROM bible WHERE bbName = '4' ORDER BY bNumber, cNumber, vNumber LIMIT 2500"
    with sqlite3.connect(f"file:{bible_db_path()}?mode=ro", uri=True) as conn:
        verses = [clean_text(text) for (text,) in conn.execute(query) if text]
    (root / "web.txt").write_text("\n".join(verses) + "\n", encoding="utf-8")
    prepare_run_data(lm_config(root / "data", root / "unused", "transformer").data)
    return root / "data"


# ------------------------------------------------------------------------------------------------ config errors
@pytest.mark.parametrize(
    ("arch", "extra", "match"),
    [
        ("transformer", ["data.context=1024"], r"model\.max_len=512 is shorter than data\.context=1024"),
        ("transformer", ["model.max_len=16"], r"model\.max_len=16 is shorter than data\.context=32"),
        ("transformer", ["model.max_len=32"], r"model\.max_len=32 .*\(\+ BOS\).* needs model\.max_len >= 33"),
        ("lstm", ["model.attention=true"], r"attention.*data\.task=lm builds a decoder-only model"),
        ("lstm", ["model.reverse_source=true"], r"reverse_source"),
        ("transformer", ["model.task=seq2seq"], r"model\.task is set by data\.task"),
    ],
)
def test_bad_lm_configs_are_one_line_naming_the_key(tmp_path: Path, arch: str, extra: list[str], match: str):
    with pytest.raises(ConfigError, match=match) as err:
        lm_config(tmp_path / "d", tmp_path / "r", arch, *extra)
    assert "\n" not in str(err.value)


def test_passage_and_context_keys_are_checked(tmp_path: Path) -> None:
    base = [*TINY, ROOT / "configs/tiny/transformer.yaml"]
    assert load_config(base, ["data.task=passages"]).data.passage_len == 256  # the default length
    with pytest.raises(ConfigError, match=r"model\.max_len=64 is shorter than data\.passage_len=64"):
        load_config(base, ["data.task=passages", "data.passage_len=64", "model.max_len=64"])
    with pytest.warns(ConfigWarning, match=r"data\.context=1024 does nothing with data\.task=translation"):
        load_config(base, ["data.context=1024"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain translation config warns about nothing new
        cfg = load_config(base)
    assert cfg.data.task == "translation" and target_width(cfg.data) == cfg.data.max_len + 1


def test_an_lm_on_a_translation_pair_is_one_line_naming_the_corpus(tmp_path: Path) -> None:
    with pytest.warns(ConfigWarning, match=r"data\.corpus=bible:4-l is parallel text, but data\.task=lm"):
        cfg = load_config(
            [*TINY, ROOT / "configs/tiny/lm.yaml"], ["data.corpus=bible:4-l", f"data.dir={tmp_path}"]
        )
    with pytest.raises(ValueError, match=r"data\.task=lm reads monolingual text.*bible:4\+k\+3"):
        prepare_run_data(cfg.data)


def test_a_passage_length_the_corpus_cannot_fill_names_the_key(tmp_path: Path) -> None:
    src, tgt = write_parallel(tmp_path, n=60)
    cfg = load_config([*TINY, ROOT / "configs/tiny/transformer.yaml"],
                      [f"data.dir={tmp_path / 'p'}", f"data.corpus=parallel:{src}|{tgt}", "data.task=passages",
                       "data.passage_len=100000", "model.max_len=100001", "data.limit=0"])  # fmt: skip
    with pytest.raises(ValueError, match=r"data\.passage_len=100000 cannot be filled"):
        prepare_run_data(cfg.data)


# ------------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("arch", ["lstm", "residual_lstm", "transformer", "lstm_no_cell_residual", "minlstm"])
def test_every_arch_trains_as_a_language_model(
    lm_data: Path, tmp_path: Path, arch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = lm_config(
        lm_data, tmp_path / "run", arch, "train.max_steps=2", "train.val_every=2", "optim.warmup_steps=1"
    )
    first_inputs: list[torch.Tensor] = []  # what each train and validation batch fed the model at position 0
    for step in ("training_step", "validation_step"):
        original = getattr(Seq2SeqModule, step)

        def spy(self, batch, batch_idx, _original=original):  # noqa: ANN001, ANN202
            first_inputs.append(batch["tgt_in"][:, 0].clone())
            return _original(self, batch, batch_idx)

        monkeypatch.setattr(Seq2SeqModule, step, spy)
    summary = fit(cfg)
    assert summary["steps"] == 2 and math.isfinite(summary["valid_loss"])
    assert len(first_inputs) >= 3 and all((x == BOS_ID).all() for x in first_inputs)  # BOS opens every window
    assert "bleu" not in summary  # no decoding for a language model
    # the decoder alone: a seq2seq model of the same config has more parameters (source embedding/encoder)
    seq2seq = load_config(
        [*TINY, ROOT / f"configs/tiny/{arch}.yaml"], ["model.attention=false"] * (arch in RECURRENT)
    )
    from pipeline.training.run_model import run_model

    assert summary["params"] < run_model(seq2seq).num_params()
    # every window trains CONTEXT + 1 targets (BOS first); FLOPs come from flops_per_token(0, CONTEXT + 1)
    assert summary["tokens"] % (CONTEXT + 1) == 0 and summary["tokens"] > 0
    fpt = run_model(cfg).flops_per_token(0, CONTEXT + 1)
    timing = summary["timing"]
    assert timing["flops_per_s"] == pytest.approx(fpt * timing["tokens_per_s"], rel=1e-6)


def test_lm_resume_continues_exactly(lm_data: Path, tmp_path: Path) -> None:
    """6 straight steps == 3 steps, stop, resume to 6: the same losses (the data position and optimizer carry)."""
    extra = ("train.val_every=3", "train.deterministic=true", "train.max_steps=6", "optim.schedule=constant")
    fit(lm_config(lm_data, tmp_path / "straight", "lstm", *extra))
    fit(lm_config(lm_data, tmp_path / "split", "lstm", *extra, "train.max_steps=3"))
    assert fit(lm_config(lm_data, tmp_path / "split", "lstm", *extra), resume="auto")["steps"] == 6
    la, lb = read_metric(tmp_path / "straight", "train/loss"), read_metric(tmp_path / "split", "train/loss")
    assert la and sorted(la) == sorted(lb), "logged steps have a gap or a duplicate"
    for step in la:
        assert lb[step] == pytest.approx(la[step], rel=1e-6, abs=1e-7), f"train loss differs at step {step}"


def test_lm_per_token_losses_are_one_row_per_window_of_context_positions(
    lm_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    fit(lm_config(lm_data, run, "transformer", "train.max_steps=2", "train.val_every=2", "data.max_len=8"))
    losses = np.load(run / "valid_token_losses.npz")["loss"]
    assert losses.shape[1] == CONTEXT + 1 and not np.isnan(losses).any()


@pytest.mark.slow
def test_lm_under_deepspeed_zero2_matches_ddp(lm_data: Path, tmp_path: Path) -> None:
    """Two CPU ranks (tests/integration/deepspeed_worker.py) train the LM under ZeRO-2, its optimizer state offloaded
    to the CPU (torch AdamW), and under DDP from one config and seed: the same batches and initial weights, so the
    same losses up to the reduction order of the sharded gradients and the optimizer step (see LM_ZERO2_RTOL)."""
    from tests.integration.test_deepspeed import WORKER, _env

    files = [*TINY, ROOT / "configs/tiny/lm.yaml", ROOT / "configs/tiny/transformer.yaml"]
    common = ("train.devices=2", "train.max_steps=4", "train.val_every=2", "optim.warmup_steps=1",
              "optim.schedule=constant")  # fmt: skip
    runs = {}
    for name, strategy in (("ddp", ["train.strategy=ddp"]), ("zero2", ["train.strategy=deepspeed",
                                                                        "train.zero_stage=2", "train.offload_optimizer=true"])):  # fmt: skip
        runs[name] = tmp_path / name
        cmd = [sys.executable, str(WORKER), "--resume=never", *[f"--config={p}" for p in files],
               *lm_overrides(lm_data, runs[name], "transformer", *common, *strategy)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-4000:]
    effective = json.loads((runs["zero2"] / "deepspeed_config.json").read_text())
    assert (
        effective["zero_optimization"]["stage"] == 2 and "offload_optimizer" in effective["zero_optimization"]
    )
    assert not (runs["ddp"] / "deepspeed_config.json").exists()  # the reference really ran without DeepSpeed
    for column in ("train/loss", "valid/loss"):
        ddp, zero = read_metric(runs["ddp"], column), read_metric(runs["zero2"], column)
        assert ddp.keys() == zero.keys() and ddp, (
            f"{column}: logged steps differ: {sorted(ddp)} vs {sorted(zero)}"
        )
        for step in ddp:
            assert math.isfinite(zero[step])
            assert zero[step] == pytest.approx(ddp[step], rel=LM_ZERO2_RTOL), (
                f"{column} differs at step {step}"
            )


# ------------------------------------------------------------------------------------------------ sweeps
def _sweep(grid: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pipeline", "sweep", "--grid", str(grid), "--out", str(out)]
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "PATH": "/usr/bin:/bin"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=out.parent)


def test_sweep_with_an_attention_free_arm_on_passages(tmp_path: Path) -> None:
    """Two arms of one arch (Luong attention vs Sutskever 2014) on passage translation: records keyed by label."""
    src, tgt = write_parallel(tmp_path, n=200)
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({
        "name": "arms", "base": [str(p) for p in TINY], "token_budgets": [800], "evals_per_run": 1,
        "set": {"data.dir": str(tmp_path / "p"), "data.corpus": f"parallel:{src}|{tgt}", "data.task": "passages",
                "data.passage_len": 60, "data.limit": 0, "train.bleu_samples": 2, "data.batch_tokens": 512},
        "archs": {"lstm": {"model": {"attention": True}, "sizes": {"d16": {"d_model": 16, "n_layers": 1}}},
                  "lstm_noattn": {"arch": "lstm", "model": {"attention": False, "reverse_source": True},
                                  "sizes": {"d16": {"d_model": 16, "n_layers": 1}}}},
    }))  # fmt: skip
    proc = _sweep(grid, tmp_path / "sweep")
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/result.json")}
    assert sorted(records) == ["lstm-d16-800", "lstm_noattn-d16-800"]
    arm = records["lstm_noattn-d16-800"]
    assert arm["arch"] == "lstm_noattn" and arm["config"]["model"]["arch"] == "lstm"
    assert arm["config"]["model"]["reverse_source"] is True and arm["config"]["model"]["attention"] is False
    assert records["lstm-d16-800"]["arch"] == "lstm" and records["lstm-d16-800"]["config"]["arm"] is None
    # passages are longer than single lines: the mean target length is above the longest line's (~30 tokens)
    assert arm["config"]["mean_lengths"]["tgt"] > 30
    plan = json.loads((tmp_path / "sweep/plan.json").read_text())
    assert {r["arch"] for r in plan["runs"]} == {"lstm", "lstm_noattn"}


def test_grid_arms_carry_their_label_into_every_planned_config(tmp_path: Path) -> None:
    """What a SLURM array task runs is the planned config files + overrides alone: the arm label must be in them."""
    from pipeline.sweep.grid import SweepError, load_grid, plan_runs

    arms = {"lstm": {"model": {"attention": True}, "sizes": {"d16": {"d_model": 16, "n_layers": 1}}},
            "lstm_noattn": {"arch": "lstm", "model": {"attention": False, "reverse_source": True},
                            "sizes": {"d16": {"d_model": 16, "n_layers": 1}}}}  # fmt: skip
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        json.dumps({"name": "g", "base": [str(p) for p in TINY], "token_budgets": [100], "archs": arms})
    )
    runs = {r.name: r for r in plan_runs(load_grid(grid), tmp_path / "sweep", measure=False)}
    assert sorted(runs) == ["lstm-d16-100", "lstm_noattn-d16-100"]
    arm = runs["lstm_noattn-d16-100"]
    cfg = load_config(arm.configs, arm.overrides)
    assert arm.arch == cfg.arm == "lstm_noattn" and cfg.model["arch"] == "lstm"
    assert cfg.model["reverse_source"] is True and cfg.model["attention"] is False
    plain = runs["lstm-d16-100"]
    assert load_config(plain.configs, plain.overrides).arm is None
    arms["lstm_noattn"]["arch"] = "lstmm"
    grid.write_text(
        json.dumps({"name": "g", "base": [str(p) for p in TINY], "token_budgets": [100], "archs": arms})
    )
    with pytest.raises(SweepError, match=r"key 'archs\.lstm_noattn\.arch': unknown architecture 'lstmm'"):
        load_grid(grid)
