"""What a run prints is about the run: Lightning's per-start advertisement is dropped, its other info kept."""

from __future__ import annotations

import logging

import pytest
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from pipeline.training.trainer import _quiet_known_warnings


def test_lightning_cloud_logger_tip_is_dropped_and_other_info_kept(caplog: pytest.LogCaptureFixture) -> None:
    _quiet_known_warnings()
    _quiet_known_warnings()  # idempotent: one filter, however many runs a process trains
    rank_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert len(rank_log.filters) == 1
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        rank_zero_info(
            "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]"
        )
        rank_zero_info("GPU available: False, used: False")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["GPU available: False, used: False"]
