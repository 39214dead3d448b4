"""Test helper run as a script (Lightning's DDP launcher re-runs it once per extra rank): trains with `fit` and saves
each rank's final weights, so a test can compare what the ranks hold."""

from __future__ import annotations

import argparse
import json

import lightning as L
import torch

from pipeline.config import load_config
from pipeline.training.trainer import fit


class SaveRankWeights(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank == 0:
            torch.save(
                {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
                self.run_dir / "rank0_initial.pt",
            )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.run_dir / f"rank{trainer.global_rank}_weights.pt")
        gathered = trainer.strategy.all_gather(torch.tensor([trainer.global_rank]))
        if trainer.global_rank == 0:
            info = {"world_size": trainer.world_size, "ranks": sorted(int(r) for r in gathered.flatten())}
            (self.run_dir / "ranks.json").write_text(json.dumps(info))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    callback = SaveRankWeights()
    callback.run_dir = cfg.resolved_run_dir
    callback.run_dir.mkdir(parents=True, exist_ok=True)
    fit(cfg, resume="never", extra_callbacks=[callback])


if __name__ == "__main__":
    main()
