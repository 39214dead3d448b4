"""The cuDNN bf16 trap: pick a dtype the LSTM recurrence can run in, at trainer start, instead of failing mid-run.

cuDNN's RNN kernels take bfloat16 only from cuDNN 9.13 (PyTorch PR #164411, "cuDNN RNN supports BFloat16 inputs
since 9.13"). Before it, `nn.LSTM` on CUDA under bf16 fails (issue #88136), and PyTorch's non-cuDNN CUDA path fails
too: `"_thnn_fused_lstm_cell_cuda" not implemented for 'BFloat16'` (issue #116925). CPU (oneDNN) runs bf16 LSTMs.
Only the archs whose layers are `nn.LSTM` (`lstm`, `residual_lstm`) hit it; `lstm_no_cell_residual`
(`CustomLSTM`) and `minlstm` (a scan of ATen ops) do not call cuDNN's RNN.

`check_lstm_precision` decides; `run_recurrence_in` applies the decision to a built model by running every
`nn.LSTM` outside bf16 autocast in the chosen dtype (forward hooks: its inputs cast in, its outputs left in that
dtype; the layers after it autocast again as usual).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

log = logging.getLogger(__name__)

CUDNN_ARCHS = ("lstm", "residual_lstm")  # layers are nn.LSTM: cuDNN on CUDA
CUDNN_BF16_MIN = 91300  # torch.backends.cudnn.version() format: major*10000 + minor*100 + patch
FALLBACKS = ("float32", "float16", "error")


def _dtype_of(precision: str) -> str:
    p = str(precision).lower()
    if p.startswith("bf16"):
        return "bfloat16"
    if p.startswith("16"):
        return "float16"
    if p in ("32", "32-true", "64", "64-true", "transformer-engine"):
        return "float32"
    raise ValueError(f"train.precision={precision!r}: expected bf16-mixed, bf16-true, 16-mixed or 32-true")


def check_lstm_precision(
    arch: str, precision: str, cudnn_version: int | None, device_type: str, fallback: str = "float32"
) -> str:
    """The dtype the recurrence runs in: "bfloat16", "float16" or "float32".

    Only `bf16` precision with a cuDNN-LSTM arch on CUDA and cuDNN < 9.13 (or no cuDNN) changes anything: then
    `fallback` decides: "float32" (default; exact, TF32 tensor cores where allowed), "float16" (faster, cuDNN has
    run fp16 RNNs for years; the gates are bounded, but gradients are not loss-scaled under bf16-mixed), or
    "error" (one ValueError naming the versions and the two ways out). A warning says which was picked."""
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback={fallback!r}: must be one of {FALLBACKS}")
    wanted = _dtype_of(precision)
    if wanted != "bfloat16" or arch not in CUDNN_ARCHS or device_type != "cuda":
        return wanted
    if cudnn_version is not None and cudnn_version >= CUDNN_BF16_MIN:
        return "bfloat16"
    have = "no cuDNN" if cudnn_version is None else f"cuDNN {cudnn_version}"
    why = (
        f"model.arch={arch!r} with train.precision={precision!r}: {have} cannot run the LSTM in bfloat16 "
        f"(cuDNN RNNs take bf16 from {CUDNN_BF16_MIN}, i.e. 9.13; PyTorch PR #164411)"
    )
    if fallback == "error":
        raise ValueError(f"{why}; install torch with cuDNN >= 9.13, or set train.precision=32-true")
    log.warning("%s: running the recurrence in %s, the rest of the model in bf16", why, fallback)
    return fallback


def cudnn_version() -> int | None:
    """torch.backends.cudnn.version() (e.g. 91300), or None when cuDNN is absent or disabled."""
    if not torch.backends.cudnn.is_available() or not torch.backends.cudnn.enabled:
        return None
    return torch.backends.cudnn.version()


def _cast(x: Any, dtype: torch.dtype) -> Any:
    if isinstance(x, PackedSequence):
        return x._replace(data=x.data.to(dtype))
    if torch.is_tensor(x):
        return x.to(dtype) if x.is_floating_point() else x
    if isinstance(x, tuple | list):
        return type(x)(_cast(v, dtype) for v in x)
    return x


def run_recurrence_in(model: nn.Module, dtype: str) -> int:
    """Make every `nn.LSTM` in `model` run in `dtype` with bf16 autocast switched off around it; returns how many.

    Forward hooks, not a patched `forward`: hooks are plain functions in the module's own dicts, so a deep copy or
    a pickled model keeps them pointing at itself. The pre-hook casts the inputs and enters the autocast context
    (off for float32, fp16 for float16), the post-hook leaves it. The LSTM's parameters stay fp32 (mixed precision
    keeps fp32 masters). "bfloat16" leaves the model untouched."""
    if dtype == "bfloat16":
        return 0
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype={dtype!r}: expected bfloat16, float16 or float32")
    wrapped = 0
    for module in model.modules():
        if isinstance(module, nn.LSTM) and not getattr(module, "_recurrence_dtype", None):
            module.register_forward_pre_hook(functools.partial(_enter, dtype=dtype))
            module.register_forward_hook(_leave, always_call=True)
            module._recurrence_dtype = dtype
            wrapped += 1
    return wrapped


def _enter(module: nn.Module, args: tuple[Any, ...], dtype: str) -> tuple[Any, ...]:
    first = args[0]
    device_type = (first.data if isinstance(first, PackedSequence) else first).device.type
    if dtype == "float16":
        ctx = torch.autocast(device_type, dtype=torch.float16)
    else:
        ctx = torch.autocast(device_type, enabled=False)
    ctx.__enter__()
    module._recurrence_autocast = ctx
    return _cast(args, torch.float16 if dtype == "float16" else torch.float32)


def _leave(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
    ctx = module.__dict__.pop("_recurrence_autocast", None)
    if ctx is not None:
        ctx.__exit__(None, None, None)
