"""Callback: how far back the training signal reaches, measured during training (the vanishing-gradient view).

Every `train.grad_reach_every` optimizer steps, rank 0 measures ||dL/dx_t|| at every source and target position of
the current batch for the loss of each row's last target token (`grad_by_time.grad_norm_by_position`), appends the
two vectors to `<run_dir>/grad_by_position.jsonl`, and logs one scalar per side: the norm at the first position over
the norm at the last (`grad_reach/tgt_first_over_last`): ~1 means the signal reaches the start, ~0 means it
vanishes. `python -m pipeline.training.grad_reach --plot grads.png` draws the same picture for fresh models (`main`).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import lightning as L

from pipeline.models.grad_by_position import RECURRENT_ARCHS, grad_norm_by_position, measure_archs
from pipeline.scaling.analyses.grad_reach import first_over_last
from pipeline.scaling.records.run_dir import GRAD_FILE
from pipeline.scaling.report.grad_reach_section import draw_norms_by_position


class GradReachCallback(L.Callback):
    def __init__(self, every: int, run_dir: Path, partitioned: bool = False) -> None:
        """partitioned: the weights are ZeRO-3 shards, so a rank-0-only backward cannot run (nothing is measured)."""
        self.every = every
        self.partitioned = partitioned
        self.path = run_dir / GRAD_FILE

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: dict, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step == 0 or step % self.every != 0:
            return
        if self.partitioned:
            return  # a rank-0-only backward would need every rank
        norms = grad_norm_by_position(pl_module.model, batch, loss_at="last")
        record = {"step": step, **{side: [float(x) for x in vec] for side, vec in norms.items()}}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        metrics = {}
        for side in ("src", "tgt"):
            ratio = first_over_last(record[side])
            if math.isfinite(ratio):
                metrics[f"grad_reach/{side}_first_over_last"] = ratio
        pl_module.log_dict(metrics, rank_zero_only=True)


def plot(results: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Log-scale gradient norm against target and source position, one line per architecture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    draw_norms_by_position(axes, results)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="Gradient norm by position of freshly initialised tiny models, one line per architecture."
    )
    p.add_argument("--archs", nargs="+", default=list(RECURRENT_ARCHS))
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--len", type=int, default=32, help="source and target length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attention", action="store_true", help="with Luong attention (default: pure recurrence)")
    p.add_argument("--out", type=Path, default=Path("grad_by_time.json"))
    p.add_argument("--plot", type=Path, default=None, help="also write this PNG")
    a = p.parse_args(argv)
    results = measure_archs(
        tuple(a.archs), a.d_model, a.n_layers, a.len, a.len, seed=a.seed, attention=a.attention
    )
    a.out.write_text(
        json.dumps({"config": vars(a) | {"out": str(a.out), "plot": str(a.plot)}, "norms": results})
    )
    if a.plot is not None:
        plot(results, a.plot)
    for arch, norms in results.items():
        t, s = norms["tgt"], norms["src"]
        print(
            f"{arch:24s} ||dL/dx|| tgt first {t[0]:.3g} last {t[-1]:.3g} | src first {s[0]:.3g} last {s[-1]:.3g}"
        )


if __name__ == "__main__":
    main()
