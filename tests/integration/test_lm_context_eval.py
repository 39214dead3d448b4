"""Truncation and yardstick wiring on tiny LM runs: `pipeline evaluate --contexts` writes the truncation file
(a sliding window over the validation stream, equal to a direct forward on exactly K tokens), and a sweep
run's record carries L(K), the Kneser-Ney floors and the train-unigram yardstick, which `pipeline scaling
rescore` recomputes for old records."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.data.stream.lm_windows import lm_windows
from pipeline.data.tokenizer import BOS_ID
from pipeline.scaling.records.truncation_file import load_truncation
from pipeline.scaling.report.write import write_report
from pipeline.training.checkpoint_files import find_resume_checkpoint
from pipeline.training.evaluate import _evaluate, load_checkpoint_model
from pipeline.training.trainer import fit
from tests.conftest import ROOT, TINY
from tests.integration.test_lm_task import CONTEXT, _sweep, lm_config, lm_data, lm_overrides  # noqa: F401

KS = (2, 4, 8)


def test_evaluate_contexts_writes_the_truncation_file(lm_data: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    run = tmp_path / "run"
    fit(
        lm_config(
            lm_data, run, "transformer", "train.max_steps=2", "train.val_every=2", "optim.warmup_steps=1"
        )
    )
    assert _evaluate(run, None, 1, None, ",".join(map(str, KS))) == 0  # --pairs: unused with --contexts
    printed = capsys.readouterr()
    assert "L(K) over" in printed.out
    assert f"truncation: K={KS[-1]} ({len(KS)}/{len(KS)})" in printed.err  # progress, one line a context
    got = load_truncation(run)
    valid = lm_windows(lm_data, "valid")
    assert got.loss.shape == (len(KS), len(valid.tokens), CONTEXT + 1) and got.contexts.tolist() == list(KS)
    assert got.window_key.tolist() == valid.keys and set(got.clusters) == {"chapter", "book", "document"}
    assert (
        got.unit == "document"
    )  # a text: corpus has no chapters: its held-out block is resampled as one document
    assert np.isnan(got.loss[:, 0, : KS[-1]]).all() and np.isfinite(got.loss[:, 1:]).all()
    # window 1, token 0 at K = 4: BOS + the last 4 tokens of window 0 (the stream before it), one forward
    model, _ = load_checkpoint_model(find_resume_checkpoint(run))
    model.eval()
    for k_index, n, t in [(1, 1, 0), (0, 2, 5), (2, 1, CONTEXT)]:
        k = KS[k_index]
        stream = valid.tokens.reshape(-1)
        at = n * (CONTEXT + 1) + t
        ctx = torch.tensor([[BOS_ID, *stream[at - k : at]]])
        with torch.no_grad():
            want = F.cross_entropy(model.lm_forward(ctx)[0, -1:], torch.tensor([stream[at]])).item()
        assert got.loss[k_index, n, t] == pytest.approx(want, rel=1e-4)
    with pytest.raises(Exception, match=r"--contexts .* must be in 1..data.context=32"):
        _evaluate(run, None, 1, None, "4,64")
    # --stride 4: the same losses at every 4th token of each window, the others not scored
    assert _evaluate(run, None, 1, None, ",".join(map(str, KS)), stride=4) == 0
    assert "1 token in 4" in capsys.readouterr().out
    strided = load_truncation(run)
    np.testing.assert_allclose(strided.loss[:, 1:, ::4], got.loss[:, 1:, ::4], rtol=1e-5)
    assert np.isnan(np.delete(strided.loss, np.s_[::4], axis=2)).all()
    # --windows 2: the split's first and last windows (their prefixes from the whole stream), same losses
    assert _evaluate(run, None, 1, None, ",".join(map(str, KS)), windows=2) == 0
    assert "of 2 windows" in capsys.readouterr().out
    capped, last = load_truncation(run), len(valid.tokens) - 1
    assert capped.window_key.tolist() == [valid.keys[0], valid.keys[last]]
    np.testing.assert_allclose(capped.loss, got.loss[:, [0, last]], rtol=1e-5)
    assert capped.cluster_ids().tolist() == got.cluster_ids()[[0, last]].tolist()


def test_lm_sweep_record_carries_floors_truncation_and_rescore_restores_them(
    lm_data: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    grid = tmp_path / "grid.yaml"
    files = [*TINY, ROOT / "configs/tiny/lm.yaml"]
    overrides = dict(o.split("=", 1) for o in lm_overrides(lm_data, tmp_path / "unused", "transformer"))
    overrides.pop("run_dir")
    grid.write_text(json.dumps({
        "name": "lm", "base": [str(p) for p in files], "token_budgets": [1024], "evals_per_run": 1,
        "set": {**overrides, "data.context": CONTEXT, "data.limit": 120, "train.eval_contexts": "4,8"},
        "archs": {"transformer": {"sizes": {"d16": {"d_model": 16, "n_layers": 1, "n_heads": 2}}}},
    }))  # fmt: skip
    proc = _sweep(grid, tmp_path / "sweep")
    assert proc.returncode == 0, proc.stderr[-4000:]
    path = tmp_path / "sweep/transformer-d16-1024/result.json"
    record = json.loads(path.read_text())
    # an LM record: no source, windows of CONTEXT + 1 targets, epochs over the 120-window slice
    assert record["config"]["mean_lengths"] == {"src": 0, "tgt": CONTEXT + 1}
    assert record["config"]["task"] == "lm" and record["config"]["data"]["task"] == "lm"
    assert record["tokens"] >= 1024 and record["tokens"] % (CONTEXT + 1) == 0
    assert record["epochs"] == pytest.approx(record["tokens"] / (120 * (CONTEXT + 1)))
    # every window fills all CONTEXT + 1 positions: none is masked as sparse
    positions = record["loss_by_position"][: CONTEXT + 1]
    assert len(positions) >= CONTEXT + 1 and all(math.isfinite(x) for x in positions)
    assert record["truncation"]["contexts"] == [4, 8] and len(record["truncation"]["curve"]) == 2
    assert (path.parent / "valid_truncation.npz").is_file()
    floors = record["count_floors"]
    assert floors["train_windows"] == math.ceil(record["tokens"] / (CONTEXT + 1))
    for name in ("bigram", "trigram"):
        assert 0 < floors[name]["loss"] < 20 and len(floors[name]["by_position"]) == CONTEXT + 1
    assert (
        math.isfinite(record["unigram_xent"]) and record["unigram_xent"] >= record["unigram_entropy"] - 1e-9
    )
    assert list((tmp_path / "sweep/.floors").glob("*.json"))  # cached once per (data, budget)
    # 1,024 tokens teach a d16 model nothing: lift the yardstick so the run reaches the report's fits
    path.write_text(json.dumps({**record, "unigram_xent": 100.0, "unigram_entropy": 100.0}))
    report = write_report(tmp_path / "sweep", n_boot=50).read_text()
    assert "## Context (truncation)" in report and "runs beat the trigram" in report
    assert "## Gain from distant context" not in report  # the band difference is replaced
    # an old record (no yardsticks) gets them back from its data
    old = {k: v for k, v in record.items() if k not in ("unigram_xent", "count_floors", "truncation")}
    path.write_text(json.dumps(old))
    shutil.rmtree(tmp_path / "sweep/.floors")  # recomputed from the data, not read back from the cache
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "pipeline", "scaling", "rescore", str(tmp_path / "sweep")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "transformer-d16-1024: unigram_xent" in done.stdout
    new = json.loads(path.read_text())
    assert new["unigram_xent"] == pytest.approx(record["unigram_xent"], rel=1e-9)
    assert new["count_floors"] == record["count_floors"]
    assert "truncation" not in new or new["truncation"] == {}
