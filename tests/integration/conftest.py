"""The damaged-state suites' one trained run (test_damaged_state.py, test_damaged_paths.py): trained once per session.

Every test copies what it damages; nothing may write into this run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.training.checkpoint_files import list_checkpoints
from pipeline.training.trainer import fit
from tests.conftest import tiny_config

TRAIN = ("train.max_steps=6", "train.ckpt_every=2", "train.keep_checkpoints=3", "train.bleu_samples=0")


@pytest.fixture(scope="session")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    fit(tiny_config("lstm", tiny_data, run, *TRAIN))
    names = sorted(p.name for p in list_checkpoints(run))
    assert names == ["last.ckpt", "step=2.ckpt", "step=4.ckpt", "step=6.ckpt"]
    return run
