"""Suite `roofline`: the machine's GEMM FLOP/s (the limit) and each architecture's training FLOP/s as a share of it,
eager and compiled (`train.compile=model`), in the same run.

The limit is the best `torch.mm` rate (fp32, square, 256..2048) at the run's thread count: what one matmul-bound
training step could reach at best. A model's achieved rate is its analytic training FLOPs (`flops_per_token` x
target tokens, as `ThroughputCallback` counts) over the step's time; `of_limit` is the ratio. Both loops are the
hand-written step of `common.PlainLoop` (forward, loss, backward, clip, AdamW) on two deep copies of one seeded
model, over the same batches; the compiled copy's forward is `pipeline.training.compile.TrainingForward`.

How it is timed: one untimed pass over every batch for each copy first (the compiled copy compiles there, once per
distinct graph; `compile_s` is that pass's wall time minus the eager pass's), then `repeats` windows of `steps`
steps per copy, alternating which goes first. Clock as in the other suites: process CPU time on a CPU (the
machine is shared), the wall clock on a GPU. `break_even_steps` = compile_s / (eager - compiled seconds per step):
how long a run must be for compiling to pay (None where the compiled step is not faster).

Sizes: `tiny` (configs/tiny models, 256-token real batches), `demo` (configs/demo models, 2048-token batches) and
`recall-d<d>-L<L>` (decoder-only language models as the recall study trains them: width d, 2 layers, 64 rows of L
tokens, synthetic tokens over a 256-token vocabulary with full logits, so the output cost is the full one; the
memory tasks' answer-only step is timed by benchmarks/bench_mqar.py). `lstm_no_cell_residual` and `minlstm` have no
demo file: they take the demo LSTM's keys. `lstm_newton` is `lstm` with `recurrence: newton`.

`step_vs_lstm` is each row's seconds per step over `lstm`'s at the same size and mode: the hand-written recurrences'
cost against nn.LSTM at equal width. A torch.profiler table of the top ops per (size, arch, mode) goes to
`<out>/roofline_profile_<device>.txt`, to say where the time goes where a goal is missed.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Batch, BenchSettings, Clock, PlainLoop, real_batches, spread, synchronize
from pipeline.config import OptimConfig, load_config

ARCHS = ("lstm", "residual_lstm", "transformer", "lstm_no_cell_residual", "minlstm", "lstm_newton")
GEMM_SIZES = (256, 512, 1024, 2048)
RECALL = {"d_models": (64, 128), "seq_lens": (64, 256), "rows": 64, "vocab_size": 256, "n_layers": 2}
# (size, batch tokens or None, warm-up passes, timed steps, repeats)
SIZES = {"tiny": (256, 8, 3), "demo": (2048, 3, 2), "recall": (None, 3, 2)}
QUICK = {"archs": ("lstm", "transformer"), "gemm": (128, 256), "steps": 2, "repeats": 1}


def gemm_limit(
    device: torch.device, sizes: tuple[int, ...] = GEMM_SIZES, min_s: float = 0.2
) -> dict[str, Any]:
    """Best fp32 `torch.mm` FLOP/s per size (CPU time on a CPU, wall on a GPU) and the best of them: the limit."""
    clock = "cpu" if device.type == "cpu" else "wall"
    rates = {}
    for n in sizes:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        torch.mm(a, b)
        reps = max(1, int(min_s * 5e10 / (2 * n**3)))  # ~min_s at 50 GFLOP/s
        best = 0.0
        for _ in range(3):
            synchronize(device)
            start = Clock.now()
            for _ in range(reps):
                torch.mm(a, b)
            synchronize(device)
            took = Clock.now() - start
            seconds = took.cpu if clock == "cpu" else took.wall
            best = max(best, 2.0 * n**3 * reps / max(seconds, 1e-9))
        rates[str(n)] = best
    return {"clock": clock, "dtype": "float32", "flops_per_s": rates, "limit": max(rates.values())}


def model_section(
    size: str, arch: str, d_model: int | None = None, seq_len: int | None = None
) -> dict[str, Any]:
    """The `model:` keys of `arch` at `size` (see the module docstring)."""
    base, extra = ("lstm", {"recurrence": "newton"}) if arch == "lstm_newton" else (arch, {})
    if size == "recall":
        assert d_model is not None and seq_len is not None
        section: dict[str, Any] = {
            "arch": base,
            "d_model": d_model,
            "n_layers": RECALL["n_layers"],
            "task": "lm",
        }
        if base == "transformer":
            section |= {"n_heads": max(1, d_model // 32), "max_len": seq_len}
        if base == "residual_lstm":
            section |= {"n_layers": 3, "residual_from": 1}
        return section | extra
    configs = Path("configs") / size
    name = base if (configs / f"{base}.yaml").exists() else "lstm"
    section = dict(load_config([configs / "base.yaml", configs / f"{name}.yaml"]).model)
    return section | {"arch": base} | extra


def lm_batches(rows: int, seq_len: int, vocab_size: int, n: int, seed: int = 0) -> list[Batch]:
    """Full windows of random tokens, shaped as the lm task's loader makes them (empty source)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        tokens = torch.randint(4, vocab_size, (rows, seq_len + 1), generator=gen)
        out.append({"src": torch.zeros(rows, 0, dtype=torch.long), "src_mask": torch.zeros(rows, 0, dtype=torch.bool),
                    "tgt_in": tokens[:, :-1], "tgt_out": tokens[:, 1:], "n_tokens": rows * seq_len,
                    "n_src_tokens": 0})  # fmt: skip
    return out


def step_flops(model: torch.nn.Module, batch: Batch) -> float:
    from pipeline.training.throughput import batch_lengths

    return model.flops_per_token(*batch_lengths(batch)) * int(batch["n_tokens"])


def _window(loop: PlainLoop, batches: list[Batch], steps: int, clock: str) -> tuple[float, int, float]:
    """(seconds, target tokens, FLOPs) of `steps` steps over `batches`, cycled."""
    synchronize(loop.device)
    start = Clock.now()
    used = [batches[k % len(batches)] for k in range(steps)]
    for batch in used:
        loop.step(dict(batch))
    synchronize(loop.device)
    took = Clock.now() - start
    seconds = took.cpu if clock == "cpu" else took.wall
    return seconds, sum(int(b["n_tokens"]) for b in used), sum(step_flops(loop.model, b) for b in used)


def profile_table(loop: PlainLoop, batches: list[Batch], steps: int = 2, top: int = 12) -> str:
    """torch.profiler's top ops by self CPU time over `steps` warm steps."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if loop.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for k in range(steps):
            loop.step(dict(batches[k % len(batches)]))
        synchronize(loop.device)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def bench_arch(settings: BenchSettings, size: str, arch: str, model_cfg: dict[str, Any], batches: list[Batch],
               vocab_size: int, limit: float, backend: str = "inductor") -> tuple[dict[str, Any], str]:  # fmt: skip
    """Eager vs compiled training of one model on `batches` -> (result row, profile text)."""
    from pipeline.models import build_model
    from pipeline.training.compile import TrainingForward

    _, steps, repeats = SIZES[size]
    if settings.quick:
        steps, repeats = QUICK["steps"], QUICK["repeats"]
    torch.manual_seed(0)
    model = build_model(**{**model_cfg, "vocab_size": vocab_size})
    optim, device, clock = OptimConfig(), settings.torch_device, settings.clock
    loops = {}
    for mode in ("eager", "compiled"):
        m = copy.deepcopy(model)
        forward = TrainingForward(m, "model" if mode == "compiled" else "none", model_cfg, 10**9, backend)
        loops[mode] = PlainLoop(m, optim, 10**6, device, settings.precision, forward=forward)
    warm = {}
    for (
        mode,
        loop,
    ) in loops.items():  # first sight of every shape: compiles (compiled), allocator/oneDNN (both)
        t0 = time.perf_counter()
        for batch in batches:
            loop.step(dict(batch))
        synchronize(device)
        warm[mode] = time.perf_counter() - t0
    timed: dict[str, list[tuple[float, int, float]]] = {"eager": [], "compiled": []}
    for r in range(repeats):
        for mode in ("eager", "compiled") if r % 2 == 0 else ("compiled", "eager"):
            timed[mode].append(_window(loops[mode], batches, steps, clock))
    forward = loops["compiled"].forward
    row: dict[str, Any] = {"size": size, "arch": arch, "model": model_cfg, "params": model.num_params(),
                           "rows": int(batches[0]["tgt_in"].shape[0]), "steps": steps, "repeats": repeats,
                           "compiled": forward.is_compiled, "fallback": forward.fallback_reason,
                           "compile_s": max(0.0, warm["compiled"] - warm["eager"]), "warm_pass_s": warm}  # fmt: skip
    for mode, windows in timed.items():
        row[mode] = {
            "step_s": spread([s / steps for s, _, _ in windows]),
            "tokens_per_s": spread([t / s for s, t, _ in windows]),
            "flops_per_s": spread([f / s for s, _, f in windows]),
            "of_limit": spread([f / s / limit for s, _, f in windows]),
        }
    pairs = zip(timed["eager"], timed["compiled"], strict=True)
    row["speedup"] = spread([(tc / sc) / (te / se) for (se, te, _), (sc, tc, _) in pairs])
    saved = row["eager"]["step_s"]["median"] - row["compiled"]["step_s"]["median"]
    row["break_even_steps"] = round(row["compile_s"] / saved) if saved > 0 else None
    text = "".join(
        f"\n## {size} {arch} {mode}\n{profile_table(loops[mode], batches)}\n"
        for mode in ("eager", "compiled")
    )
    return row, text


def size_batches(settings: BenchSettings, size: str, data: dict[str, Any]) -> list[tuple[str, dict[str, Any], list[Batch], int]]:  # fmt: skip
    """(size label, per-arch model keys at that size, batches, vocab size) for `size`."""
    if size == "recall":
        points = (
            [(64, 64)] if settings.quick else list(zip(RECALL["d_models"], RECALL["seq_lens"], strict=True))
        )
        out = []
        for d, seq_len in points:
            n = 2 if settings.quick else 4
            batches = lm_batches(
                RECALL["rows"] // (4 if settings.quick else 1), seq_len, RECALL["vocab_size"], n
            )
            out.append(
                (f"recall-d{d}-L{seq_len}", {"d_model": d, "seq_len": seq_len}, batches, RECALL["vocab_size"])
            )
        return out
    batch_tokens = SIZES[size][0]
    n = 2 if settings.quick else 4
    batches = real_batches(settings.data_dir, batch_tokens, n, max_len=data["max_len"])
    return [(size, {}, batches, data["vocab_size"])]


def run(settings: BenchSettings, data: dict[str, Any], out: Path, log: Any = print,
        backend: str = "inductor") -> dict[str, Any]:  # fmt: skip
    """GEMM limit, then every size x architecture, eager and compiled; writes the profile tables under `out`."""
    gemm = gemm_limit(settings.torch_device, QUICK["gemm"] if settings.quick else GEMM_SIZES)
    limit = gemm["limit"]
    log(f"roofline: GEMM limit {limit / 1e9:.1f} GFLOP/s ({gemm['clock']} clock)")
    archs = QUICK["archs"] if settings.quick else ARCHS
    sizes = ("tiny", "recall") if settings.quick else ("tiny", "demo", "recall")
    rows, profiles = [], []
    for size in sizes:
        for label, keys, batches, vocab in size_batches(settings, size, data):
            for arch in archs:
                cfg = model_section(size, arch, keys.get("d_model"), keys.get("seq_len"))
                if cfg.get("arch") == "transformer" and "max_len" not in cfg:
                    cfg["max_len"] = data["max_len"] + 1
                row, text = bench_arch(settings, size, arch, cfg, batches, vocab, limit, backend)
                row["size"] = label
                rows.append(row)
                profiles.append(text.replace(f"## {size} ", f"## {label} ", 2))
                log(f"roofline {label:>16} {arch:>22}: eager {row['eager']['of_limit']['median']:.1%}, compiled "
                    f"{row['compiled']['of_limit']['median']:.1%} of the limit, speedup "
                    f"{row['speedup']['median']:.2f}, compile {row['compile_s']:.0f} s")  # fmt: skip
    for row in rows:
        ref = next((r for r in rows if r["size"] == row["size"] and r["arch"] == "lstm"), None)
        row["step_vs_lstm"] = None if ref is None else {
            mode: row[mode]["step_s"]["median"] / ref[mode]["step_s"]["median"] for mode in ("eager", "compiled")
        }  # fmt: skip
    fixes = speed_fixes(settings, data, archs)
    profile_path = out / f"roofline_profile_{settings.device}.txt"
    profile_path.write_text(
        "# top ops by self CPU time, 2 warm steps each (benchmarks/roofline.py)\n" + "".join(profiles)
    )
    return {
        "gemm": gemm,
        "clock": settings.clock,
        "backend": backend,
        "rows": rows,
        "profile": profile_path.name,
        "fixes": fixes,
    }


def speed_fixes(
    settings: BenchSettings, data: dict[str, Any], archs: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Fixes 2 and 3 before/after (benchmarks/speed_fixes.py): minLSTM's scan at the largest recall size, fused
    AdamW on the tiny models."""
    from benchmarks.speed_fixes import adamw_fix, minlstm_scan_fix

    d, seq_len = (64, 64) if settings.quick else (RECALL["d_models"][-1], RECALL["seq_lens"][-1])
    rows = RECALL["rows"] // (4 if settings.quick else 1)
    batches = lm_batches(rows, seq_len, RECALL["vocab_size"], 2)
    steps = 2 if settings.quick else 6
    minlstm_cfg = model_section("recall", "minlstm", d, seq_len)
    out = [minlstm_scan_fix(settings, minlstm_cfg, batches, RECALL["vocab_size"], steps)]
    for arch in archs:
        cfg = model_section("tiny", arch)
        if cfg.get("arch") == "transformer":
            cfg.setdefault("max_len", data["max_len"] + 1)
        out.append(adamw_fix(settings, arch, cfg, data["vocab_size"], 10 if settings.quick else 50))
    return out
