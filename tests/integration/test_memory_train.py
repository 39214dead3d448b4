"""Tiny runs of the memory tasks through `pipeline train` and a sweep's run: the examples are generated
at the first run, the model is decoder-only, and every record holds the answer metrics and the model's state size.
A few seconds each on one CPU core."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import RunConfig, load_config
from pipeline.scaling.records.run_record import load_record
from pipeline.sweep.run_one import train_run
from pipeline.training.logged_metrics import read_metric
from pipeline.training.run_model import run_model
from pipeline.training.trainer import fit
from tests.conftest import ROOT, TINY


def test_tiny_mqar_run_records_answer_metrics_and_a_transformer_learns_it(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["train", "--config", str(TINY[0]), "--config", str(ROOT / "configs/tiny/mqar.yaml"),
            f"data.dir={tmp_path / 'data'}", f"run_dir={run}"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    m = summary["answer_metrics"]
    assert (m["task"], m["N"], m["L"], m["V"], m["split"]) == ("mqar", 2, 16, 32, "valid")
    assert m["state_floats"] == 2 * 2 * 32 * 16 and m["state_bits"] == 32 * m["state_floats"]  # KV cache at L
    assert m["answers"] == 256 * 2  # every validation query, each scored once
    assert sum(b["answers"] for b in m["by_distance"]) == m["answers"]
    assert sum(b["correct"] for b in m["by_distance"]) == m["correct"]
    assert all(b["distance"][0] >= 2 and b["distance"][1] < 16 for b in m["by_distance"])
    assert m["accuracy"] == m["correct"] / m["answers"]
    assert m["accuracy"] > 3 / 16  # chance is 1/16 (V/2 values)
    assert abs(summary["valid_loss"] - m["loss"]) < 1e-5  # valid/loss is the answers' loss
    assert list(read_metric(run, "valid/accuracy").values())[-1] == m["accuracy"]
    assert "bleu" not in summary
    # FLOPs: the output projection runs at the answers only (N = 2 of L = 16 positions), and so it is counted
    record = load_record(run / "result.json")
    model = run_model(load_config([run / "config.yaml"]))
    full, output = model.flops_per_token(0, 16), model.output_flops_per_token()
    assert record.config["output_projection_share"] == 2 / 16
    assert record.flops_per_token == pytest.approx(full - output * (1 - 2 / 16), rel=1e-12)
    assert record.flops_per_token_no_output == pytest.approx(full - output, rel=1e-12)
    assert record.compute == pytest.approx(record.flops_per_token * record.tokens, rel=1e-12)
    # how the steps ran is part of what the timing means: the tiny config trains eager, and says so
    setting = load_config([run / "config.yaml"]).train.compile
    assert record.hardware["compile"] == {
        "setting": setting,
        "compiled": setting == "model",
        "fallback": None,
    }


def test_tiny_copy_sweep_run_writes_exact_match_by_length(tmp_path: Path) -> None:
    run = tmp_path / "run"
    configs = [str(TINY[0]), str(ROOT / "configs/tiny/copy.yaml"), str(ROOT / "configs/tiny/lstm.yaml")]
    overrides = [f"data.dir={tmp_path / 'data'}", f"run_dir={run}", "name=copy-lstm", "model.attention=false",
                 "train.val_batches=0"]  # fmt: skip
    train_run(configs, overrides)
    record = load_record(run / "result.json")
    m = record.answer_metrics
    assert (m["task"], m["V"], m["L"], m["train_len"], m["eval_len"]) == ("copy", 8, 15, [1, 4], [1, 6])
    assert m["state_floats"] == 2 * 2 * 32  # h and c of 2 layers, whatever the length
    assert m["strings"] == 128 and 0 <= m["exact"] <= m["strings"]
    rows = m["by_length"]
    assert {r["length"] for r in rows} <= set(range(1, 7)) and 6 in {r["length"] for r in rows}
    assert sum(r["strings"] for r in rows) == m["strings"]
    assert all(r["answers"] == r["strings"] * (r["length"] + 1) for r in rows)  # the copy and the '.'
    assert record.final_valid_loss == m["loss"] or abs(record.final_valid_loss - m["loss"]) < 1e-5


def _mqar(data: Path, run: Path, *extra: str) -> RunConfig:
    files = [*TINY, ROOT / "configs/tiny/mqar.yaml", ROOT / "configs/tiny/lstm.yaml"]
    return load_config(files, [f"data.dir={data}", f"run_dir={run}", "model.attention=false", *extra])


def test_mqar_resume_continues_exactly(tmp_path: Path) -> None:
    """6 straight steps == 3 steps, stop, resume to 6: the same answer-only losses (data position carried)."""
    extra = ("train.val_every=3", "train.deterministic=true", "train.max_steps=6", "optim.schedule=constant",
             "optim.warmup_steps=0")  # fmt: skip
    data = tmp_path / "data"
    fit(_mqar(data, tmp_path / "straight", *extra))
    fit(_mqar(data, tmp_path / "split", *extra, "train.max_steps=3"))
    assert fit(_mqar(data, tmp_path / "split", *extra), resume="auto")["steps"] == 6
    la, lb = read_metric(tmp_path / "straight", "train/loss"), read_metric(tmp_path / "split", "train/loss")
    assert la and sorted(la) == sorted(lb)
    for step in la:
        assert lb[step] == pytest.approx(la[step], rel=1e-6, abs=1e-7), f"train loss differs at step {step}"


@pytest.mark.slow
def test_mqar_under_deepspeed_zero2_sums_the_answers_of_both_ranks(tmp_path: Path) -> None:
    """Two CPU ranks under ZeRO-2: each validates half of the split; the record counts every answer once."""
    from tests.integration.test_deepspeed import WORKER, _env

    run = tmp_path / "zero"
    files = [*TINY, ROOT / "configs/tiny/mqar.yaml"]
    overrides = [f"data.dir={tmp_path / 'data'}", f"run_dir={run}", "train.devices=2", "train.strategy=deepspeed",
                 "train.zero_stage=2", "train.max_steps=2", "train.val_every=2", "optim.warmup_steps=1"]  # fmt: skip
    cmd = [sys.executable, str(WORKER), "--resume=never", *[f"--config={p}" for p in files], *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    m = json.loads((run / "summary.json").read_text())["answer_metrics"]
    assert m["answers"] == 256 * 2 and sum(b["answers"] for b in m["by_distance"]) == m["answers"]


def test_stop_at_accuracy_ends_the_run_at_its_first_validation_and_the_sweep_counts_it_done(
    tmp_path: Path, capsys
) -> None:
    """A threshold below chance (1/16) is met at the first validation: the run stops there, far short of
    max_steps, writes a complete record that says why, and a sweep (run again) trains it no further."""
    grid = tmp_path / "stop.yaml"
    grid.write_text(
        "name: stop\n"
        f"base: [{TINY[0]}, {ROOT / 'configs/tiny/mqar.yaml'}]\n"
        "step_budgets: [100000]\n"
        "evals_per_run: 10000\n"  # a validation every 10 steps
        f"set: {{train.stop_at_accuracy: 0.02, data.dir: {tmp_path / 'data'}}}\n"
        "archs: {transformer: {sizes: {d16: {d_model: 16, n_layers: 2, n_heads: 2}}}}\n"
    )
    sweep = tmp_path / "sweep"
    assert main(["sweep", "--grid", str(grid), "--out", str(sweep)]) == 0
    (run,) = [p for p in sweep.iterdir() if p.is_dir()]
    record = load_record(run / "result.json")
    stop = record.early_stop
    assert (stop["step"], stop["max_steps"], stop["metric"], stop["threshold"]) == (
        10,
        100000,
        "accuracy",
        0.02,
    )
    assert stop["value"] == record.answer_metrics["accuracy"] >= 0.02
    assert "train.stop_at_accuracy=0.02" in stop["reason"] and "step 10 of 100000" in stop["reason"]
    assert [p["step"] for p in record.valid_curve] == [10]
    assert record.tokens == 10 * 64 * 16  # 10 steps of 64 sequences of L = 16: what ran, not the budget
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 10 and summary["early_stop"] == stop
    assert "stopping early: validation answer accuracy" in capsys.readouterr().err

    assert main(["sweep", "--grid", str(grid), "--out", str(sweep)]) == 0  # resumed: nothing to do
    assert "0 trained, 1 already finished, 0 failed" in capsys.readouterr().out
    # `pipeline train` on the same run resumes from the stop's checkpoint, trains nothing and keeps the files
    cfg = load_config([run / "config.yaml"])  # the run's resolved config, as the sweep trained it
    again = fit(cfg, resume="auto")
    assert again["steps"] == 10 and again["early_stop"] == stop
    assert "already finished at step 10; summary kept" in capsys.readouterr().err
    assert len(read_metric(run, "valid/loss")) == 1  # validated once, at the stop
