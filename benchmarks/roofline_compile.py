"""How the roofline suite compiles: which architectures it compiles by default, a wall-time cap on one compile,
and the second compile of a fresh copy with the compiler's caches warm.

Not compiled unless asked (`NOT_COMPILED`; `--roofline-compile ARCH` measures it anyway): architectures whose
compile is known not to pay on this machine, or where compiling covers too little of the step to be worth minutes
of a bounded measurement. Their rows time the eager copy only and carry the reason.

The cap (`--roofline-compile-cap S`): the compiled copy's first pass over the batches (where it compiles) is
interrupted after S wall seconds by SIGALRM; the row then records the cap instead of compiled figures and
dynamo's state is reset, so the next architecture compiles from scratch. Main thread only (signals); elsewhere
there is no cap.

Why a warm recompile (`--roofline-recompile`): a sweep trains hundreds of models of the same shape, and inductor
keeps what it generated on disk (`TORCHINDUCTOR_CACHE_DIR`), so only a study's first run pays the cold compile; the
others pay dynamo's tracing and a cache look-up. `recompile_s` is that cost, measured in the same process after
`torch._dynamo.reset()` on a fresh copy of the model (a new process would also load the cached code from disk).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch

NOT_COMPILED = {
    "lstm_no_cell_residual": (
        "not compiled: its TorchScript step loop inside an autograd.Function took 632 s to compile at the tiny "
        "size for a 0.89x step (roofline run on the shared 2-core machine, load ~4-6, process CPU clock)"
    ),
    "lstm_newton": (
        "not compiled: its Newton solver runs eager under train.compile (torch.compiler.disable: data-dependent "
        "iteration counts), so compiling covers only the embeddings and the projections around it"
    ),
}


class CompileCapReached(BaseException):  # noqa: N818 - not an error: the measurement's own stop
    """Raised by SIGALRM inside a compile that ran past the cap. A BaseException, so that
    `TrainingForward`'s fallback (which catches Exception) does not turn it into an eager run."""


def compile_skip_reason(arch: str, compile_archs: tuple[str, ...]) -> str | None:
    """Why `arch` is not compiled by default (None: compile it); `compile_archs` names ones to compile anyway."""
    if arch in compile_archs or "all" in compile_archs:
        return None
    return NOT_COMPILED.get(arch)


@contextlib.contextmanager
def compile_cap(seconds: float | None) -> Iterator[None]:
    """Raise `CompileCapReached` in this block after `seconds` of wall time (no cap: None, or off the main thread)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise CompileCapReached(f"compile cap {seconds:g} s reached")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def capped_reason(seconds: float) -> str:
    return (
        f"not compiled: the compiled copy's first pass (where it compiles) ran past the {seconds:g} s cap "
        "(--roofline-compile-cap)"
    )


def reset_compiler() -> None:
    """Forget every compiled graph of this process (the on-disk inductor cache stays)."""
    torch._dynamo.reset()


def timed_pass(step: Any, batches: list[dict[str, Any]], sync: Any) -> float:
    """Wall seconds of one step per batch (the first sight of each shape)."""
    t0 = time.perf_counter()
    for batch in batches:
        step(dict(batch))
    sync()
    return time.perf_counter() - t0
