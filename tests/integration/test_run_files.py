"""The files a run leaves, whoever started it: a finished run started again keeps them, `pipeline train` writes
the same result.json a sweep does, so plain run directories can be reported, and every file follows the umask."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main as cli
from pipeline.data.stream.loader import build_loader
from pipeline.scaling.analyses.study import analyse_study
from pipeline.scaling.records.run_dir import RESULT_FILE, SUMMARY_FILE, TOKEN_LOSS_FILE
from pipeline.scaling.records.run_record import load_record
from pipeline.scaling.records.token_losses import load_token_losses
from pipeline.training.run_data import loader_max_len
from pipeline.training.trainer import fit
from tests.conftest import tiny_config

QUICK = ("train.bleu_samples=0",)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_finished_run_started_again_keeps_its_summary_and_record(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], umask_022: None
) -> None:
    run = tmp_path / "run"
    first = fit(tiny_config("lstm", tiny_data, run, *QUICK))
    assert first["steps"] == 6 and first["valid_loss"] > 0
    summary, result = (run / SUMMARY_FILE).read_bytes(), (run / RESULT_FILE).read_bytes()
    # written with the process umask (022): readable by the group, like config.yaml
    for name in (RESULT_FILE, TOKEN_LOSS_FILE, SUMMARY_FILE, "config.yaml"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o644, name

    # each row of the per-token file names its validation sample and carries its tokens, as the loader gives them
    cfg = tiny_config("lstm", tiny_data, run, *QUICK)
    given = {k: row for b in build_loader(tiny_data, "valid", batch_tokens=cfg.data.batch_tokens,
                                          max_len=loader_max_len(cfg.data))
             for k, row in zip(b["keys"], b["tgt_out"].numpy(), strict=True)}  # fmt: skip
    tl = load_token_losses(run)
    assert len(tl.seq_key) == len(tl.loss) and set(tl.seq_key) <= set(given)
    for key, tokens, scored, loss in zip(tl.seq_key, tl.tokens, tl.scored, tl.loss, strict=True):
        width = min(len(tokens), len(given[key]))
        assert (tokens[:width] == given[key][:width]).all() and (scored == np.isfinite(loss)).all()

    again = fit(tiny_config("lstm", tiny_data, run, *QUICK))
    assert "already finished at step 6; summary kept" in capsys.readouterr().err
    assert (run / SUMMARY_FILE).read_bytes() == summary
    assert (run / RESULT_FILE).read_bytes() == result
    assert (
        again["valid_loss"] == first["valid_loss"] and again["loss_by_position"] == first["loss_by_position"]
    )

    # a run that died between its last step and its summary is validated again, never summarised with nulls
    (run / SUMMARY_FILE).unlink()
    (run / RESULT_FILE).unlink()
    third = fit(tiny_config("lstm", tiny_data, run, *QUICK))
    written = json.loads((run / SUMMARY_FILE).read_text())
    assert written["valid_loss"] == pytest.approx(first["valid_loss"], rel=1e-5)
    assert written["loss_by_position"] == pytest.approx(first["loss_by_position"], rel=1e-5, nan_ok=True)
    assert third["steps"] == 6
    assert load_record(run / RESULT_FILE).final_valid_loss == pytest.approx(first["valid_loss"], rel=1e-5)


def test_plain_run_directories_are_reported_with_loss_by_position(tiny_data: Path, tmp_path: Path) -> None:
    """Two `pipeline train` runs in directories not named after their runs, in different parents."""
    dirs = [tmp_path / "mine" / "first", tmp_path / "theirs" / "second"]
    for arch, run in zip(("lstm", "transformer"), dirs, strict=True):
        fit(tiny_config(arch, tiny_data, run, *QUICK))
        assert load_record(run / RESULT_FILE).arch == arch  # the same record a sweep run writes
        # seconds of training learn no more than token frequencies: fit them as records without the entropy
        record = json.loads((run / RESULT_FILE).read_text())
        assert record["unigram_xent"] > 0  # learned-nothing yardstick: a plain run's record carries it too
        record.pop("unigram_entropy")
        record.pop("unigram_xent")
        (run / RESULT_FILE).write_text(json.dumps(record))

    study = analyse_study([str(d) for d in dirs], n_boot=10)
    curves = {arch: c for arch, pairs in study.position_curves.items() for _, c in pairs}
    assert set(curves) == {"lstm", "transformer"}
    assert all(
        c.lo is not None and c.source.endswith(TOKEN_LOSS_FILE) for c in curves.values()
    )  # bands: npz found

    out = tmp_path / "report"
    assert cli(["scaling", "report", *map(str, dirs), "--out", str(out), "--n-boot", "10"]) == 0
    text = (out / "report.md").read_text()
    assert "2 finished runs over 2 architectures" in text and "## Loss by target position" in text
    assert (out / "loss_vs_position.png").stat().st_size > 1000
    assert cli(["scaling", "fit", str(dirs[0]), "--n-boot", "10", "--out", str(out / "one")]) == 0
    assert json.loads((out / "one" / "fit.json").read_text())["n_runs"] == 1
    assert load_token_losses(dirs[0]) is not None
