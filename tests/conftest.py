"""Shared fixtures: one tiny slice of the real default corpus, prepared once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = [ROOT / "configs/tiny/base.yaml"]

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# One intra-op thread per process: with 2 cores shared by pytest, DDP ranks and loader workers, OpenMP's spinning
# threads make a tiny LSTM step ~300x slower (measured: 4 s vs 13 ms per forward+backward under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`configs/tiny/base.yaml`'s data (1500 pairs a split of English WEB -> French Segond), in a temp dir."""
    from pipeline.config import load_config
    from pipeline.training.run_data import prepare_run_data

    out = tmp_path_factory.mktemp("data") / "tiny-bible"
    prepare_run_data(load_config(TINY + [ROOT / "configs/tiny/lstm.yaml"], [f"data.dir={out}"]).data)
    return out


def tiny_overrides(data_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [f"data.dir={data_dir}", f"run_dir={run_dir}", *extra]


def tiny_config(arch: str, data_dir: Path, run_dir: Path, *extra: str):
    from pipeline.config import load_config

    return load_config(TINY + [ROOT / f"configs/tiny/{arch}.yaml"], tiny_overrides(data_dir, run_dir, *extra))
