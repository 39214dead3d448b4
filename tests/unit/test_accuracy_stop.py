"""`train.stop_at_accuracy` (pipeline/training/accuracy_stop.py) without a trainer: when it stops, what it records,
when a resumed run stops again or trains on, and the record's `early_stop` checks."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from lightning.pytorch.trainer.states import TrainerFn

from pipeline.scaling.records.run_record import RunRecord, record_from_dict
from pipeline.training.accuracy_stop import StopAtAccuracy


class Saver:
    def __init__(self) -> None:
        self.saved: list[int] = []

    def save_now(self, trainer: Any) -> None:
        self.saved.append(trainer.global_step)


def trainer(step: int, fn: TrainerFn = TrainerFn.FITTING) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=1000, should_stop=False, sanity_checking=False,
                           state=SimpleNamespace(fn=fn), is_global_zero=False)  # fmt: skip


def module(accuracy: float | None) -> SimpleNamespace:
    return SimpleNamespace(answer_metrics={"accuracy": accuracy})


def test_it_stops_at_the_first_validation_at_or_above_the_value_and_saves_there() -> None:
    saver = Saver()
    cb = StopAtAccuracy(0.9, saver)
    t = trainer(100)
    cb.on_validation_end(t, module(0.89))
    assert not t.should_stop and cb.stopped is None and saver.saved == []
    t = trainer(200)
    cb.on_validation_end(t, module(0.9))
    assert t.should_stop and saver.saved == [200]
    assert {k: cb.stopped[k] for k in ("step", "max_steps", "metric", "value", "threshold")} == {
        "step": 200, "max_steps": 1000, "metric": "accuracy", "value": 0.9, "threshold": 0.9}  # fmt: skip
    # a validation outside fit (trainer.validate after a resume) never stops anything
    other = StopAtAccuracy(0.5, Saver())
    t = trainer(300, TrainerFn.VALIDATING)
    other.on_validation_end(t, module(1.0))
    assert not t.should_stop and other.stopped is None
    unset = StopAtAccuracy(None, Saver())  # the key unset: only its state is kept
    t = trainer(300)
    unset.on_validation_end(t, module(1.0))
    assert not t.should_stop and unset.stopped is None


@pytest.mark.parametrize(
    ("resumed_at", "threshold", "stops"),
    [(200, 0.9, True), (200, 0.8, True), (200, 0.95, False), (100, 0.9, False), (200, None, False)],
)
def test_a_resumed_run_stops_again_only_at_its_stop_while_the_value_is_still_met(
    resumed_at: int, threshold: float | None, stops: bool
) -> None:
    first = StopAtAccuracy(0.9, Saver())
    first.on_validation_end(trainer(200), module(0.93))
    cb = StopAtAccuracy(threshold, Saver())
    cb.load_state_dict(first.state_dict())
    t = trainer(resumed_at)
    cb.on_train_start(t, module(None))
    assert t.should_stop is stops and (cb.stopped is not None) is stops


def test_the_record_checks_early_stop() -> None:
    record = RunRecord(run="r", arch="lstm", params=10, non_embedding_params=5, flops_per_token=2.0, tokens=100,
                       compute=200.0, epochs=1.0, final_valid_loss=1.0, best_valid_loss=1.0)  # fmt: skip
    stop = {
        "step": 20,
        "max_steps": 100,
        "metric": "accuracy",
        "value": 0.99,
        "threshold": 0.99,
        "reason": "r",
    }
    assert record_from_dict(replace(record, early_stop=stop).to_dict()).early_stop == stop
    assert record_from_dict(record.to_dict()).early_stop == {}
    with pytest.raises(ValueError, match=r"'early_stop.step' \(200\) is past its max_steps \(100\)"):
        record_from_dict(replace(record, early_stop={**stop, "step": 200}).to_dict(), "x.json")
    with pytest.raises(ValueError, match=r"x.json: key 'early_stop.step' must be an integer"):
        record_from_dict(replace(record, early_stop={**stop, "step": None}).to_dict(), "x.json")
