"""Test helper run as a script (Lightning's launcher re-runs it once per extra rank): `fit` under any strategy, then
each rank writes `rank{R}.json` with the bytes of the training state it holds, so a test can compare DDP and ZeRO.

Bytes counted per rank: parameters (under ZeRO-3 the rank's partition `ds_tensor`, not the gathered view) and the
optimizer state (Adam moments; DeepSpeed's fp32 master partitions are counted separately as `master_bytes`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch

from pipeline.config import load_config
from pipeline.train import fit


def _tensor_bytes(values: Any) -> int:
    if torch.is_tensor(values):
        return values.numel() * values.element_size()
    if isinstance(values, dict):
        return sum(_tensor_bytes(v) for v in values.values())
    if isinstance(values, list | tuple):
        return sum(_tensor_bytes(v) for v in values)
    return 0


def state_bytes(trainer: L.Trainer, module: L.LightningModule) -> dict[str, int]:
    """This rank's parameter, optimizer-state and (DeepSpeed only) fp32 master-copy bytes."""
    params = list(module.parameters())
    param_bytes = sum(_tensor_bytes(getattr(p, "ds_tensor", p)) for p in params)
    optimizer = trainer.optimizers[0]
    inner = getattr(optimizer, "optimizer", optimizer)  # DeepSpeed's ZeRO optimizer wraps the torch one
    moment_bytes = sum(
        _tensor_bytes({k: v for k, v in s.items() if k != "step"}) for s in inner.state.values()
    )
    master = [
        getattr(optimizer, name, [])
        for name in ("fp32_partitioned_groups_flat", "single_partition_of_fp32_groups")
    ]
    return {
        "param_bytes": param_bytes,
        "optimizer_bytes": moment_bytes,
        "master_bytes": _tensor_bytes(master),
    }


class RecordState(L.Callback):
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        info = {
            "world_size": trainer.world_size,
            "step": trainer.global_step,
            **state_bytes(trainer, pl_module),
        }
        (self.run_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(info))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument("--resume", default="never")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    run_dir = cfg.resolved_run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    fit(cfg, resume=args.resume, extra_callbacks=[RecordState(run_dir)])


if __name__ == "__main__":
    main()
