"""What one training step of an architecture asks of the hardware: FLOPs and sequential depth.

FLOPs come from the models' own `flops_per_token` (docs/flops.md); a large model is built on the meta device so that a
350M-parameter config costs no memory. Depth is counted here because no model knows it: the number of kernel steps that must run
one after another in a forward + backward pass, whatever the batch size. The unit is one "layer step": one time
step of one LSTM layer, one Transformer layer, one level of a scan tree. Backward retraces the same chain, so
depth per training step = 2 x forward depth.

- LSTM family (`lstm`, `residual_lstm`, `lstm_no_cell_residual`): L * (S + T): every layer waits for its own
  previous time step, in encoder and decoder (cuDNN may overlap layers in a wavefront; L * (S+T) is the upper
  bound it starts from). With `model.recurrence: newton` (parallel Newton iterations over the sequence):
  iters * L * 2 * (ceil(log2 S) + ceil(log2 T)): each iteration is one cell evaluation over all steps plus an
  odd-even scan of 2 ceil(log2 T) - 1 levels (pipeline/models/parallel_scan.py); iters = `newton_iters`
  (measured mean scans per solve, a cost-model key) or else `newton_max_iters` (the solver's cap: an upper bound).
- Transformer: 2 L (L encoder + L decoder layers; every position of a layer runs at once).
- minLSTM (log-space scan): L * (ceil(log2 S) + ceil(log2 T)) (a parallel scan over T has depth ~log2 T).
Plus HEAD_DEPTH steps outside the stacks (embeddings, attention over the encoder, output projection, loss).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.cost.recurrent import cells_and_chain
from pipeline.cost.step_time import StepCost

SEQUENTIAL_LSTMS = ("lstm", "residual_lstm", "lstm_no_cell_residual")
SCANS = ("minlstm",)
PARALLEL = ("transformer",)
KNOWN_ARCHS = (*SEQUENTIAL_LSTMS, *SCANS, *PARALLEL)
HEAD_DEPTH = 3  # embeddings, (attention +) output projection, loss: outside the per-layer chain
NEWTON_ITERS_DEFAULT = 100  # LSTMConfig.newton_max_iters' default: the cap, when neither iters key is given


@dataclass(frozen=True)
class StepShape:
    """One training step's shape: `batch` rows of `src_len` source and `tgt_len` target tokens (real, unpadded)."""

    batch: int
    src_len: int
    tgt_len: int

    def __post_init__(self) -> None:
        for key in ("batch", "src_len", "tgt_len"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"StepShape.{key}={value!r}: must be an int >= 1")

    @property
    def tokens(self) -> int:
        """Target tokens per step (what tokens/s counts everywhere in the project)."""
        return self.batch * self.tgt_len


def _log2_steps(n: int) -> int:
    return max(1, math.ceil(math.log2(max(n, 2))))


def _model_keys(arch: str, model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The model config without the keys `build_model` does not take (`arch` itself)."""
    if arch not in KNOWN_ARCHS:
        raise ValueError(f"unknown model arch {arch!r} for the cost model; known: {sorted(KNOWN_ARCHS)}")
    return {k: v for k, v in model_cfg.items() if k != "arch"}


def forward_depth(arch: str, model_cfg: Mapping[str, Any], src_len: int, tgt_len: int) -> int:
    """Dependent layer steps of one forward pass (see the module docstring for each formula)."""
    cfg = _model_keys(arch, model_cfg)
    n_layers = cfg.get("n_layers")
    if not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"model.n_layers={n_layers!r}: must be an int >= 1 (arch {arch!r})")
    recurrence = cfg.get("recurrence", "sequential")
    if arch in PARALLEL:
        return 2 * n_layers + HEAD_DEPTH
    tree = _log2_steps(src_len) + _log2_steps(tgt_len)
    if arch in SCANS:
        return n_layers * tree + HEAD_DEPTH
    if recurrence == "newton":
        # measured mean scans per solve if the caller has them (model.step_stats()), else the solver's cap
        iters = cfg.get("newton_iters") or cfg.get("newton_max_iters") or NEWTON_ITERS_DEFAULT
        if not isinstance(iters, int | float) or iters < 1:
            raise ValueError(f"model.newton_iters={iters!r}: must be a number >= 1")
        return math.ceil(iters * n_layers * 2 * tree) + HEAD_DEPTH  # cell evaluation + odd-even scan levels
    if recurrence != "sequential":
        raise ValueError(f"model.recurrence={recurrence!r}: the cost model knows 'sequential' and 'newton'")
    return n_layers * (src_len + tgt_len) + HEAD_DEPTH


def recurrent_cells(arch: str, model_cfg: Mapping[str, Any], src_len: int, tgt_len: int) -> tuple[int, int]:
    """(cells, chain) of the per-step recurrent GEMMs of a sequential LSTM (`pipeline.cost.recurrent`); (0, 0) for
    the parallel architectures and the Newton recurrence, whose steps the depth alone describes."""
    cfg = _model_keys(arch, model_cfg)
    if arch not in SEQUENTIAL_LSTMS or cfg.get("recurrence", "sequential") != "sequential":
        return 0, 0
    return cells_and_chain(arch, int(cfg["n_layers"]), src_len, tgt_len)


def step_depth(arch: str, model_cfg: Mapping[str, Any], src_len: int, tgt_len: int) -> int:
    """Dependent layer steps of one training step: forward, then backward along the same chain."""
    return 2 * forward_depth(arch, model_cfg, src_len, tgt_len)


COST_ONLY_KEYS = ("newton_iters",)  # read by the cost model only; removed before the model is built


META_ABOVE = 3e7  # estimated parameters above which the model is built on the meta device


def _estimated_params(cfg: Mapping[str, Any]) -> float:
    # an upper-ish bound over the archs (an encoder + decoder Transformer layer pair is ~24 d^2)
    d, L, V = cfg.get("d_model", 0), cfg.get("n_layers", 0), cfg.get("vocab_size", 0)
    return 32.0 * L * d * d + 3.0 * V * d


def _build_meta(arch: str, cfg: dict[str, Any]) -> Any:
    """The model, for its formulas and parameter shapes only. Large ones are built on the meta device (no memory);
    small ones on the CPU, because the first `normal_` on a meta tensor loads torch's decomposition tables
    (~5-20 s on this machine), far more than initialising a small model costs."""
    import torch

    from pipeline.models.registry import build_model

    kwargs = {k: v for k, v in cfg.items() if k not in COST_ONLY_KEYS}
    device = "meta" if _estimated_params(cfg) > META_ABOVE else "cpu"
    with torch.device(device), torch.no_grad():
        return build_model(arch, **kwargs)


def _frozen(cfg: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()))


@functools.lru_cache(maxsize=256)
def _flops_per_token(arch: str, frozen_cfg: tuple[tuple[str, Any], ...], src_len: int, tgt_len: int) -> float:
    cfg = dict(frozen_cfg)
    model = _build_meta(arch, cfg)
    iters = cfg.get("newton_iters")
    if cfg.get("recurrence") == "newton" and iters:  # the Newton LSTM's FLOPs depend on its scans per solve
        return float(model.flops_per_token(src_len, tgt_len, newton_iters=(iters, iters)))
    return float(model.flops_per_token(src_len, tgt_len))


def flops_per_token(arch: str, model_cfg: Mapping[str, Any], src_len: int, tgt_len: int) -> float:
    """Training FLOPs per target token from the model's own formula (docs/flops.md), at these real lengths."""
    return _flops_per_token(arch, _frozen(_model_keys(arch, model_cfg)), src_len, tgt_len)


def step_flops(arch: str, model_cfg: Mapping[str, Any], shape: StepShape) -> float:
    """Training FLOPs of one step of `shape`."""
    return flops_per_token(arch, model_cfg, shape.src_len, shape.tgt_len) * shape.tokens


@functools.lru_cache(maxsize=256)
def _num_params(arch: str, frozen_cfg: tuple[tuple[str, Any], ...]) -> int:
    return int(_build_meta(arch, dict(frozen_cfg)).num_params())


def num_params(arch: str, model_cfg: Mapping[str, Any]) -> int:
    """Parameter count (the optimizer's memory traffic per step scales with it)."""
    return _num_params(arch, _frozen(_model_keys(arch, model_cfg)))


def step_cost(
    arch: str,
    model_cfg: Mapping[str, Any],
    shape: StepShape,
    flops: float | None = None,
    params: int | None = None,
) -> StepCost:
    """What one step of `shape` asks for, the recurrent cells included (a GPU's `DeviceModel` times them with its
    cell model). `flops`/`params` override the model's formula (a run record already holds them)."""
    cells, chain = recurrent_cells(arch, model_cfg, shape.src_len, shape.tgt_len)
    return StepCost(
        flops=step_flops(arch, model_cfg, shape) if flops is None else flops,
        depth=step_depth(arch, model_cfg, shape.src_len, shape.tgt_len),
        params=num_params(arch, model_cfg) if params is None else params,
        cells=cells,
        chain=chain,
        cell_batch=shape.batch if cells else 0,
        cell_width=int(model_cfg["d_model"]) if cells else 0,
    )
