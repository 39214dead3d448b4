"""`train.compile`: the training forward through `torch.compile`, or eager where it cannot compile or does not pay.

What is compiled: the whole model's forward (`torch.compile(model)`: dynamo traces the embeddings, the stacks, the
attention and the output projection into one graph and AOTAutograd builds its backward), used by the training step
only. For the memory tasks (`data.task: mqar | copy`) the training forward is `AnswerForward` (the model's
`lm_hidden` and the output projection at the answer positions only, pipeline/training/answer_metrics.py), compiled
the same way under the same settings. Validation and decoding stay eager: they run a few batches of other shapes, and each new shape or grad mode
would be one more compile. The per-step alternative (compiling the recurrent cell's step alone) was measured in
pipeline/models/recurrent_cell.py (24 s to compile, slower than TorchScript's loop), so it is not offered.

Values: "none" (eager), "model" (compile), "auto" (compile where `benchmarks/roofline.py` measured a gain on this
device type, for runs long enough to win the compile time back; see `AUTO_MIN_STEPS`). Strings, not booleans,
because YAML 1.1 reads `on`/`off` as booleans.

Per architecture: `recurrence: newton` compiles around its solver, which stays eager (`NewtonLSTM.forward` is
`torch.compiler.disable`d: data-dependent iteration counts took minutes to trace); minLSTM's scan uses the exact
`torch.logcumsumexp` when compiled (`pipeline/models/log_scan.py`: the chunked form branches on the data).

Compilation happens lazily at the first training step, inside `trainer.fit`, so its seconds count in the run's
wall time and in `ThroughputCallback`'s per-batch time (`run_timing` sums every batch, the first included).

Fallback: if dynamo or inductor fails (no C++ compiler, an unsupported op, a graph that raises where eager does
not), one warning line names the model and the reason, and training continues eager with the same weights. The compiled callable shares the module's
parameters and is not an `nn.Module` attribute, so state dicts and checkpoints keep the eager model's keys.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

COMPILE_CHOICES = ("none", "model", "auto")

# `train.compile=auto`: (device type, architecture label) -> the shortest run, in steps, that compiles. A pair enters
# only where `python -m benchmarks.run --suites roofline` measured the compiled step faster on a quiet machine, at
# every size it measured; its steps are twice that run's largest `break_even_steps` (compile seconds / seconds saved
# per step), so that compiling wins back its own time with margin. Set by `python -m benchmarks.auto_compile
# <run JSON> --write` (the rule: benchmarks/auto_compile.py), or by hand. Empty until measured: auto trains eager
# everywhere. Filling it changes the wall time of the `auto` runs trained after it, so fill it between studies, not
# in the middle of one whose time axis compares runs.
AUTO_MIN_STEPS: dict[tuple[str, str], int] = {}


class CompileFallbackWarning(UserWarning):
    """The model could not be compiled; training continues eager."""


def model_label(model_cfg: dict[str, Any]) -> str:
    """'lstm (recurrence=newton)' style name for messages: the arch and what makes it a different program."""
    arch = str(model_cfg.get("arch", "?"))
    extra = model_cfg.get("recurrence")
    return f"{arch} (recurrence={extra})" if extra not in (None, "sequential") else arch


def wants_compile(setting: str, model_cfg: dict[str, Any], device_type: str, max_steps: int) -> bool:
    """Whether `train.compile=setting` compiles this model on this device type for a run of `max_steps`."""
    if setting not in COMPILE_CHOICES:
        raise ValueError(f"train.compile={setting!r}: must be one of {', '.join(COMPILE_CHOICES)}")
    if setting == "auto":
        need = AUTO_MIN_STEPS.get((device_type, model_label(model_cfg)))
        return need is not None and max_steps >= need
    return setting == "model"


class TrainingForward:
    """The training step's forward: compiled, or the module itself (eager) where compiling is off or failed.

    Call it like the model. Whether to compile is decided at the first call, from the input's device type (the
    module is built before Lightning moves it). A compiled call that raises is retried eager: if eager raises too,
    the input was at fault and eager's error propagates; if not, the compiler was (dynamo, inductor, or a graph that
    traces wrong, at any call: a new shape recompiles), and it switches to eager for good, with one
    `CompileFallbackWarning` line naming the model and the reason.
    """

    def __init__(self, model: nn.Module, setting: str, model_cfg: dict[str, Any], max_steps: int,
                 backend: str = "inductor") -> None:  # fmt: skip
        wants_compile(setting, model_cfg, "cpu", max_steps)  # a bad setting fails here, not at the first step
        self.model = model
        self.setting, self.model_cfg, self.max_steps, self.backend = setting, model_cfg, max_steps, backend
        self.label = model_label(model_cfg)
        self.compiled: Callable[..., Any] | None = None
        self.decided = False
        self.fallback_reason: str | None = None

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None

    def record(self) -> dict[str, Any]:
        """How this process's training steps ran, for the run's record: a timing means little without it.
        `compiled` is None where no step ran here (a run finished by an earlier attempt)."""
        return {"setting": self.setting, "compiled": self.is_compiled if self.decided else None,
                "fallback": self.fallback_reason}  # fmt: skip

    def __call__(self, *args: torch.Tensor) -> Any:
        if not self.decided:
            self.decided = True
            if wants_compile(self.setting, self.model_cfg, args[0].device.type, self.max_steps):
                self.compiled = torch.compile(
                    self.model, backend=self.backend, dynamic=dynamic_shapes(self.model)
                )
        if self.compiled is None:
            return self.model(*args)
        try:
            return self.compiled(*args)
        except Exception as err:  # noqa: BLE001 - sorted out below: a compiler failure, or the input's fault
            out = self.model(*args)  # eager raises too if the input is at fault: then that error propagates
            self.compiled = None
            self.fallback_reason = first_line(err)
            warnings.warn(
                f"train.compile: {self.label} cannot be compiled, training eager: {self.fallback_reason}",
                CompileFallbackWarning,
                stacklevel=2,
            )
            return out


def dynamic_shapes(model: nn.Module) -> bool | None:
    """Translation batches vary in rows and both lengths (bucketed): compiling shape-generic code at once costs one
    compile instead of dynamo's three (static, then dynamic length, then dynamic rows; measured on configs/tiny).
    A language model's windows are all `data.context` long: static shapes, specialised code (None = dynamo's
    default, which turns a dimension dynamic only once it changes)."""
    config = getattr(model, "config", None)
    return None if getattr(config, "task", "seq2seq") == "lm" else True


def first_line(err: BaseException) -> str:
    """The exception's type and first message line, and its root cause's (a backend failure's message starts with
    "backend='inductor' raised:" and the reason is the inner exception's); inductor's reports run to many lines."""

    def line(e: BaseException) -> str:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        return f"{type(e).__name__}: {lines[0] if lines else ''}"

    root = getattr(err, "inner_exception", None) or err.__cause__
    return (line(err) + (f" ({line(root)})" if root is not None else ""))[:300]
