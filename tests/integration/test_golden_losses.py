"""Golden losses: the first 10 training losses of a seed-fixed tiny run of every architecture, checked in
(`tests/golden/first_losses.json`), so that any change to what training computes (initialisation, data order,
tokenizer, loss, optimizer, schedule, a model's forward) shows here and is made on purpose.

Each run is `pipeline.training.trainer.fit` on the tiny corpus slice (`configs/tiny/base.yaml` + the
architecture's tiny config, seed 7) for 10 steps with the loss logged every step: about a second per
architecture once Lightning is loaded. Every architecture of the model registry is covered.

A deliberate change: regenerate, look at the diff, commit it with the change that caused it:
    PIPELINE_REGEN_GOLDEN=1 python -m pytest -p no:cacheprovider tests/integration/test_golden_losses.py
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

from pipeline.models.registry import MODEL_REGISTRY
from pipeline.training.logged_metrics import read_metric
from pipeline.training.trainer import fit
from tests.conftest import ROOT, tiny_config

GOLDEN = ROOT / "tests/golden/first_losses.json"
REGEN_ENV = "PIPELINE_REGEN_GOLDEN"
STEPS = 10
OVERRIDES = (f"train.max_steps={STEPS}", "train.log_every=1", f"train.val_every={STEPS}", "train.val_batches=1",
             "train.bleu_samples=0")  # fmt: skip
# Measured: the same losses bit for bit across runs and across 1 or 2 intra-op threads. What may still move them
# without a change in the code is float32 rounding on another CPU or torch build (~1e-7 relative per operation,
# grown over 10 Adam steps to well under 1e-5); a real change (one init, batch, token or loss term different)
# moves the first losses by 1e-3 or more. 1e-5 relative keeps the first kind quiet and catches the second.
RTOL = 1e-5


def first_losses(arch: str, data: Path, run: Path) -> list[float]:
    fit(tiny_config(arch, data, run, *OVERRIDES))
    losses = read_metric(run, "train/loss")
    assert sorted(losses) == list(range(STEPS)), f"logged steps {sorted(losses)}"
    return [losses[step] for step in range(STEPS)]


def _regenerate(arch: str, losses: list[float]) -> None:
    """Rewrite this architecture's entry; locked, so parallel test workers do not lose each other's entries."""
    with open(Path(tempfile.gettempdir()) / "pipeline-golden-losses.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        golden = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
        golden["_how"] = (f"first {STEPS} train/loss values of configs/tiny/base.yaml + configs/tiny/<arch>.yaml "
                          f"with {' '.join(OVERRIDES)}; regenerate: {REGEN_ENV}=1 pytest {Path(__file__).relative_to(ROOT)}")  # fmt: skip
        golden[arch] = {"train_loss": losses, "torch": torch.__version__}
        GOLDEN.write_text(json.dumps(dict(sorted(golden.items())), indent=1) + "\n")


@pytest.mark.parametrize("arch", sorted(MODEL_REGISTRY))  # a new architecture needs configs/tiny/<arch>.yaml
def test_first_ten_losses_match_the_golden_file(arch: str, tiny_data: Path, tmp_path: Path) -> None:
    losses = first_losses(arch, tiny_data, tmp_path / "run")
    if os.environ.get(REGEN_ENV) == "1":
        _regenerate(arch, losses)
    golden = json.loads(GOLDEN.read_text())
    assert arch in golden, f"{GOLDEN} has no {arch}: run with {REGEN_ENV}=1 to add it"
    expected = golden[arch]["train_loss"]
    assert len(expected) == STEPS and expected[0] > expected[-1]  # the file holds a run that learned
    for step, (got, want) in enumerate(zip(losses, expected, strict=True)):
        assert got == pytest.approx(want, rel=RTOL, abs=0), (
            f"{arch} step {step}: loss {got!r}, golden {want!r} (torch {torch.__version__}, golden made with "
            f"{golden[arch]['torch']}); if the change is deliberate: {REGEN_ENV}=1 pytest {__file__}"
        )
