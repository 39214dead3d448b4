"""A run record's yardsticks (what it must beat), from its prepared data and (if asked) its final checkpoint.

``run_yardsticks`` gives ``unigram_xent`` for every text task, ``count_floors`` for LM runs, and ``truncation`` for
LM runs whose ``train.eval_contexts`` is set (the run's newest checkpoint scored at those contexts). The trainer
calls it as any run finishes (``run_result.build_record``, for `pipeline train` and `pipeline sweep` alike);
``pipeline scaling rescore`` calls it for records written before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import model_vocab_size
from pipeline.training.count_floors import count_floors, train_target_counts, unigram_xent


def run_yardsticks(cfg: Any, run_dir: Path, tokens: int, valid_id_counts: list[int] | np.ndarray,
                   truncation: bool = True) -> dict[str, Any]:  # fmt: skip
    """{"unigram_xent", "count_floors", "truncation"} as far as they apply (see the module docstring)."""
    d = cfg.data
    out: dict[str, Any] = {}
    train = train_target_counts(d.dir, model_vocab_size(d), cache_dir=Path(run_dir).parent)
    if train is not None:
        out["unigram_xent"] = unigram_xent(train, valid_id_counts)
    if d.task != "lm":
        return out
    out["count_floors"] = count_floors(d.dir, int(d.context), tokens, cache_dir=Path(run_dir).parent)
    if truncation and cfg.train.eval_contexts:
        from pipeline.training.checkpoint_files import find_resume_checkpoint
        from pipeline.training.evaluate import load_checkpoint_model
        from pipeline.training.truncation_run import evaluate_truncation

        ckpt = find_resume_checkpoint(Path(run_dir))
        if ckpt is None:
            raise FileNotFoundError(f"{run_dir}: no checkpoint to score at train.eval_contexts")
        model, _ = load_checkpoint_model(ckpt)
        out["truncation"] = evaluate_truncation(
            model, d.dir, int(d.context), cfg.train.eval_contexts, run_dir,
            stride=cfg.train.eval_stride, max_windows=cfg.train.eval_windows,
        )  # fmt: skip
    return out
