"""Test helper run as a script (Lightning's launcher re-runs it once per extra rank): `fit` under any strategy, then
each rank writes `rank{R}.json` with the bytes of the training state it holds, so a test can compare DDP and ZeRO.

Bytes counted per rank: parameters (under ZeRO-3 the rank's partition `ds_tensor`, not the gathered view) and the
optimizer state (Adam moments; DeepSpeed's fp32 master partitions are counted separately as `master_bytes`).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import lightning as L
import torch

from pipeline.config import load_config
from pipeline.training.process_exit import TrainProcess, exit_process
from pipeline.training.trainer import fit


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
    """Keeps this rank's state sizes at the end of training; `main` writes them once `fit` has returned."""

    def __init__(self) -> None:
        self.rank = 0
        self.info: dict[str, Any] = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rank = trainer.global_rank
        self.info = {
            "world_size": trainer.world_size,
            "step": trainer.global_step,
            **state_bytes(trainer, pl_module),
        }


def main() -> TrainProcess:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument("--resume", default="never")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    run_dir = cfg.resolved_run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    record = RecordState()
    process = TrainProcess()
    fit(cfg, resume=args.resume, extra_callbacks=[record], process=process)
    # a process group left alive past `fit` can abort the interpreter at exit (see process_exit.release_process_group)
    record.info["process_group_left"] = torch.distributed.is_initialized()
    (run_dir / f"rank{record.rank}.json").write_text(json.dumps(record.info))
    if (
        record.rank == 0
    ):  # exit_process does not wait for Lightning's rank processes: wait for their files here
        deadline = time.monotonic() + 120
        files = [run_dir / f"rank{r}.json" for r in range(record.info.get("world_size", 1))]
        while not all(f.exists() for f in files) and time.monotonic() < deadline:
            time.sleep(0.1)
    return process


if __name__ == "__main__":
    exit_process(main())  # the way `pipeline train` ends: no interpreter teardown after a distributed run
