"""Beam search at the end of training and in `pipeline evaluate --beam`: width 1 is greedy, other widths are
recorded and decode the same test pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main as cli
from pipeline.training.trainer import fit
from tests.conftest import tiny_config


def test_train_beam_and_evaluate_beam_flag(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.models.beam

    widths: list[int] = []
    real_beam = pipeline.models.beam.beam_decode

    def spy(*args, **kwargs):
        widths.append(args[6])
        return real_beam(*args, **kwargs)

    monkeypatch.setattr(pipeline.models.beam, "beam_decode", spy)
    run = tmp_path / "lstm"
    summary = fit(tiny_config("lstm", tiny_data, run, "train.beam=3", "train.length_penalty=1.0"))
    assert summary["beam"] == 3 and summary["decoded_pairs"] == 4 and set(widths) == {3}
    widths.clear()

    def evaluate(*flags: str) -> dict:
        assert cli(["evaluate", str(run), "--pairs", "4", *flags]) == 0
        return json.loads(capsys.readouterr().out)

    greedy = evaluate("--beam", "1")
    assert greedy["beam"] == 1 and widths == []  # width 1 is the greedy decoder
    beam_three = evaluate()
    assert beam_three["beam"] == 3 and set(widths) == {3}  # default: the run's train.beam
    assert [e["src"] for e in beam_three["examples"]] == [e["src"] for e in greedy["examples"]]
    assert beam_three["examples"] == summary["examples"]  # the same weights, the same beam, the same text

    assert cli(["evaluate", str(run), "--beam", "0"]) == 2
    assert "--beam must be >= 1" in capsys.readouterr().err
