"""Before/after of the eager fixes the roofline's profiles led to, timed in the same run (the `roofline` suite).

Fix 2, minLSTM's scan: `torch.logcumsumexp` (before) vs `pipeline.models.log_scan.logcumsumexp_dim1` (after),
swapped in `pipeline.models.minlstm` for the "before" copy; two copies of one minLSTM, training steps interleaved on
the same batches at the recall size. Fix 3, the optimizer: AdamW's for-loop implementation (before; torch's CPU
default) vs `fused=True` (after; what `Seq2SeqModule.configure_optimizers` and `PlainLoop` use), one optimizer step
on the parameters of the configs/tiny models with random gradients, interleaved.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch

from benchmarks.common import Batch, BenchSettings, Clock, PlainLoop, spread, synchronize
from pipeline.config import OptimConfig


def _seconds(settings: BenchSettings, fn: Any) -> float:
    synchronize(settings.torch_device)
    start = Clock.now()
    fn()
    synchronize(settings.torch_device)
    took = Clock.now() - start
    return took.cpu if settings.clock == "cpu" else took.wall


@contextlib.contextmanager
def exact_minlstm_scan() -> Iterator[None]:
    """minLSTM with `torch.logcumsumexp` as before fix 2."""
    from pipeline.models import minlstm

    chunked = minlstm.logcumsumexp_dim1
    minlstm.logcumsumexp_dim1 = lambda x: torch.logcumsumexp(x, 1)
    try:
        yield
    finally:
        minlstm.logcumsumexp_dim1 = chunked


def minlstm_scan_fix(settings: BenchSettings, model_cfg: dict[str, Any], batches: list[Batch], vocab: int,
                     steps: int) -> dict[str, Any]:  # fmt: skip
    from pipeline.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(**{**model_cfg, "vocab_size": vocab})
    loops = {who: PlainLoop(copy.deepcopy(model), OptimConfig(), 10**6, settings.torch_device, settings.precision)
             for who in ("before", "after")}  # fmt: skip
    seconds: dict[str, list[float]] = {"before": [], "after": []}
    for i in range(steps + 1):  # the first pair is a warm-up
        batch = batches[i % len(batches)]
        for who in ("before", "after") if i % 2 == 0 else ("after", "before"):
            with exact_minlstm_scan() if who == "before" else contextlib.nullcontext():
                took = _seconds(settings, lambda w=who, b=batch: loops[w].step(dict(b)))
            if i:
                seconds[who].append(took)
    return {"fix": "minLSTM scan: chunked logcumsumexp (pipeline/models/log_scan.py)", "model": model_cfg,
            "rows": int(batches[0]["tgt_in"].shape[0]), "seq_len": int(batches[0]["tgt_in"].shape[1]),
            "before_step_s": spread(seconds["before"]), "after_step_s": spread(seconds["after"]),
            "step_speedup": spread([b / a for b, a in zip(seconds["before"], seconds["after"], strict=True)])}  # fmt: skip


def adamw_fix(settings: BenchSettings, arch: str, model_cfg: dict[str, Any], vocab: int, steps: int) -> dict[str, Any]:  # fmt: skip
    from pipeline.models.registry import build_model

    torch.manual_seed(0)
    params = list(build_model(**{**model_cfg, "vocab_size": vocab}).to(settings.torch_device).parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    opts = {"before": torch.optim.AdamW(params, lr=1e-6, fused=False),
            "after": torch.optim.AdamW(params, lr=1e-6, fused=True)}  # fmt: skip
    seconds: dict[str, list[float]] = {"before": [], "after": []}
    for i in range(steps + 1):
        for who in ("before", "after") if i % 2 == 0 else ("after", "before"):
            took = _seconds(settings, opts[who].step)
            if i:
                seconds[who].append(took)
    return {"fix": "fused AdamW", "arch": arch, "model": model_cfg, "tensors": len(params),
            "before_ms": 1000 * spread(seconds["before"])["median"],
            "after_ms": 1000 * spread(seconds["after"])["median"]}  # fmt: skip
