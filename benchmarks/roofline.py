"""Suite `roofline`: the machine's GEMM FLOP/s (the limit) and each architecture's training FLOP/s as a share of it,
eager and compiled (`train.compile=model`), in the same run.

The limit is the best `torch.mm` rate (fp32, square, 256..2048) at the run's thread count: what one matmul-bound
training step could reach at best. Beside it, each row's `shape_limits`: the rate of the thin GEMMs its step
actually multiplies (benchmarks/roofline_shapes.py). A model's achieved rate is its analytic training FLOPs
(`common.batch_flops`, as `ThroughputCallback` counts) over the step's time; `of_limit` is the ratio. Both loops
are the hand-written step of `common.PlainLoop` (forward, loss, backward, clip, AdamW; the memory tasks' answer-only
loss at the `mqar` size) on two deep copies of one seeded model, over the same batches; the compiled copy's forward
is `pipeline.training.compile.TrainingForward`.

How it is timed: one untimed pass over every batch for each copy first (the compiled copy compiles there, once per
distinct graph; `compile_s` is that pass's wall time minus the eager pass's), then `repeats` windows of `steps`
steps per copy, alternating which goes first. Clock as in the other suites: process CPU time on a CPU (the
machine is shared), the wall clock on a GPU. `break_even_steps` = compile_s / (eager - compiled seconds per step):
how long a run must be for compiling to pay (None where the compiled step is not faster); `break_even_warm_steps`
the same with `recompile_s`, the compile of a fresh copy once the compiler's caches are warm (`--roofline-recompile`,
what a sweep's later runs pay). Which architectures compile, the cap on one compile: benchmarks/roofline_compile.py.
Sizes: benchmarks/roofline_points.py.

`step_vs_lstm` is each row's seconds per step over `lstm`'s at the same size and mode: the hand-written recurrences'
cost against nn.LSTM at equal width. A torch.profiler table of the top ops per (size, arch, mode) goes to
`<out>/roofline_profile_<device>.txt`, to say where the time goes where a goal is missed. `on_update` receives the
suite's result after every row (benchmarks/run.py writes the JSON then), so a run stopped early keeps its rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Batch, BenchSettings, Clock, PlainLoop, batch_flops, spread, synchronize
from benchmarks.roofline_compile import (
    CompileCapReached,
    capped_reason,
    compile_cap,
    compile_skip_reason,
    reset_compiler,
    timed_pass,
)
from benchmarks.roofline_names import ARCHS, RECALL
from benchmarks.roofline_points import (
    Point,
    fresh_loop,
    lm_batches,
    model_section,
    points,
    subject,
    wanted_points,
)
from benchmarks.roofline_shapes import batch_shape, op_cost_s, shape_limits

GEMM_SIZES = (256, 512, 1024, 2048)
# size family -> (timed steps, repeats)
SIZES = {"tiny": (8, 3), "demo": (3, 2), "recall": (3, 2), "mqar": (8, 3)}
DEFAULT_SIZES = ("tiny", "demo", "recall", "mqar")
QUICK = {"archs": ("lstm", "transformer"), "sizes": ("tiny", "recall-d64-L64", "mqar"), "gemm": (128, 256),
         "steps": 2, "repeats": 1}  # fmt: skip


@dataclass(frozen=True)
class RooflineOptions:
    """What to measure (`python -m benchmarks.run --roofline-*`); empty `sizes`/`archs` = the defaults."""

    sizes: tuple[str, ...] = ()  # size names or recall point labels (roofline_points.SIZE_CHOICES)
    archs: tuple[str, ...] = ()
    compile_archs: tuple[str, ...] = ()  # compile these even where roofline_compile.NOT_COMPILED says not to
    compile_cap_s: float | None = None  # wall seconds for one compiled first pass
    recompile: bool = False  # also time a warm-cache compile of a fresh copy
    fixes: bool = True  # re-time fixes 2 and 3 (speed_fixes.py) at the end
    backend: Any = "inductor"  # torch.compile backend ("eager": dynamo only, for tests)


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
    return seconds, sum(int(b["n_tokens"]) for b in used), sum(batch_flops(loop.model, b) for b in used)


def profile_table(loop: PlainLoop, batches: list[Batch], steps: int = 2, top: int = 12) -> tuple[str, float]:
    """(torch.profiler's top ops by self CPU time over `steps` warm steps, the ops a step launches: events with no
    parent event, i.e. ops called from Python or by the autograd engine, each paying the fixed cost of a call)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if loop.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for k in range(steps):
            loop.step(dict(batches[k % len(batches)]))
        synchronize(loop.device)
    launched = sum(1 for e in prof.events() if e.cpu_parent is None and e.device_type.name == "CPU")
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top), launched / steps


def _rates(windows: list[tuple[float, int, float]], steps: int, limit: float) -> dict[str, Any]:
    return {
        "step_s": spread([s / steps for s, _, _ in windows]),
        "tokens_per_s": spread([t / s for s, t, _ in windows]),
        "flops_per_s": spread([f / s for s, _, f in windows]),
        "of_limit": spread([f / s / limit for s, _, f in windows]),
    }


def bench_arch(settings: BenchSettings, point: Point, arch: str, data: dict[str, Any], limit: float,
               options: RooflineOptions) -> tuple[dict[str, Any], str]:  # fmt: skip
    """Eager vs compiled training of one model on the point's batches -> (result row, profile text). Where the
    architecture is not compiled (by default, or past the cap) the row has eager figures only and the reason."""
    steps, repeats = SIZES[point.size]
    if settings.quick:
        steps, repeats = QUICK["steps"], QUICK["repeats"]
    batches, device, clock = point.batches, settings.torch_device, settings.clock
    subj = subject(settings, point, arch, data)

    def sync() -> None:
        synchronize(device)

    loops = {"eager": fresh_loop(subj, "none", options.backend)}
    # first sight of every shape: allocator and oneDNN caches (both), compiling (compiled)
    warm = {"eager": timed_pass(loops["eager"].step, batches, sync)}
    not_compiled = compile_skip_reason(arch, options.compile_archs)
    if not_compiled is None:
        loops["compiled"] = fresh_loop(subj, "model", options.backend)
        try:
            with compile_cap(options.compile_cap_s):
                warm["compiled"] = timed_pass(loops["compiled"].step, batches, sync)
        except CompileCapReached:
            reset_compiler()
            del loops["compiled"]
            not_compiled = capped_reason(float(options.compile_cap_s or 0))
    timed: dict[str, list[tuple[float, int, float]]] = {mode: [] for mode in loops}
    for r in range(repeats):
        for mode in list(loops) if r % 2 == 0 else list(loops)[::-1]:
            timed[mode].append(_window(loops[mode], batches, steps, clock))
    compiled = loops.get("compiled")
    rows, tokens = batch_shape(batches)
    row: dict[str, Any] = {"size": point.label, "arch": arch, "model": subj.model_cfg,
                           "params": subj.model.num_params(), "rows": rows, "tokens_per_batch": tokens,
                           "steps": steps, "repeats": repeats,
                           "is_compiled": compiled is not None and compiled.forward.is_compiled,
                           "not_compiled": not_compiled,
                           "fallback": None if compiled is None else compiled.forward.fallback_reason,
                           "compile_s": None if compiled is None else max(0.0, warm["compiled"] - warm["eager"]),
                           "warm_pass_s": warm, "eager": _rates(timed["eager"], steps, limit),
                           "compiled": None, "speedup": None, "break_even_steps": None}  # fmt: skip
    if compiled is not None:
        row["compiled"] = _rates(timed["compiled"], steps, limit)
        pairs = zip(timed["eager"], timed["compiled"], strict=True)
        row["speedup"] = spread([(tc / sc) / (te / se) for (se, te, _), (sc, tc, _) in pairs])
        row["break_even_steps"] = break_even(row["compile_s"], row)
    text = ""
    for mode, loop in loops.items():
        table, launched = profile_table(loop, batches)
        text += f"\n## {point.label} {arch} {mode}\n{table}\n"
        row[mode]["ops_per_step"] = launched
    if options.recompile and row["is_compiled"]:
        row |= warm_recompile(subj, batches, sync, warm["eager"], options, row)
    return row, text


def break_even(compile_s: float | None, row: dict[str, Any]) -> int | None:
    """Steps after which compiling has paid for `compile_s` (None where the compiled step is not faster)."""
    if compile_s is None or row["compiled"] is None:
        return None
    saved = row["eager"]["step_s"]["median"] - row["compiled"]["step_s"]["median"]
    return round(compile_s / saved) if saved > 0 else None


def warm_recompile(subj: Any, batches: list[Batch], sync: Callable[[], None], eager_warm_s: float,
                   options: RooflineOptions, row: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """`recompile_s`: a fresh copy compiled after `torch._dynamo.reset()`, inductor's caches warm (see
    roofline_compile.py), minus the eager first pass; None where it ran past the cap."""
    reset_compiler()
    loop = fresh_loop(subj, "model", options.backend)
    try:
        with compile_cap(options.compile_cap_s):
            seconds: float | None = max(0.0, timed_pass(loop.step, batches, sync) - eager_warm_s)
    except CompileCapReached:
        seconds = None
    reset_compiler()
    return {"recompile_s": seconds, "break_even_warm_steps": break_even(seconds, row)}


def relate_to_lstm(rows: list[dict[str, Any]]) -> None:
    """Set every row's `step_vs_lstm`: its seconds per step over `lstm`'s at the same size, per mode both have."""
    for row in rows:
        ref = next((r for r in rows if r["size"] == row["size"] and r["arch"] == "lstm"), None)
        if ref is None:
            row["step_vs_lstm"] = None
            continue
        ratios = {
            "eager": row["eager"]["step_s"]["median"] / ref["eager"]["step_s"]["median"],
            "compiled": None,
        }
        if row["compiled"] is not None and ref["compiled"] is not None:
            ratios["compiled"] = row["compiled"]["step_s"]["median"] / ref["compiled"]["step_s"]["median"]
        row["step_vs_lstm"] = ratios


def _log_row(log: Any, row: dict[str, Any]) -> None:
    eager = f"eager {row['eager']['of_limit']['median']:.1%}"
    if row["compiled"] is None:
        log(f"roofline {row['size']:>16} {row['arch']:>22}: {eager} of the limit; {row['not_compiled']}")
        return
    log(f"roofline {row['size']:>16} {row['arch']:>22}: {eager}, compiled "
        f"{row['compiled']['of_limit']['median']:.1%} of the limit, speedup "
        f"{row['speedup']['median']:.2f}, compile {row['compile_s']:.0f} s")  # fmt: skip


def run(settings: BenchSettings, data: dict[str, Any], out: Path, options: RooflineOptions | None = None,
        log: Any = print, on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """GEMM limit, then every chosen size x architecture, eager and compiled; the profile tables under `out`."""
    options = options or RooflineOptions()
    gemm = gemm_limit(settings.torch_device, QUICK["gemm"] if settings.quick else GEMM_SIZES)
    limit = gemm["limit"]
    gemm["op_cost_s"] = op_cost_s(settings.torch_device)
    log(f"roofline: GEMM limit {limit / 1e9:.1f} GFLOP/s ({gemm['clock']} clock), an op's fixed cost "
        f"{gemm['op_cost_s'] * 1e6:.1f} us")  # fmt: skip
    archs = options.archs or (QUICK["archs"] if settings.quick else ARCHS)
    labels = wanted_points(options.sizes or (QUICK["sizes"] if settings.quick else DEFAULT_SIZES))
    profile_path = out / f"roofline_profile_{settings.device}.txt"
    profile_path.write_text("# top ops by self CPU time, 2 warm steps each (benchmarks/roofline.py)\n")
    result: dict[str, Any] = {"gemm": gemm, "clock": settings.clock, "backend": str(options.backend),
                              "options": asdict(options) | {"backend": str(options.backend)},
                              "archs": list(archs), "sizes": labels, "rows": [], "profile": profile_path.name,
                              "fixes": [], "complete": False}  # fmt: skip
    shapes: dict[tuple[int, int, int], dict[str, Any]] = {}
    for point in points(settings, labels, data):
        for arch in archs:
            t0 = time.perf_counter()
            row, text = bench_arch(settings, point, arch, data, limit, options)
            key = (row["rows"], row["tokens_per_batch"], int(row["model"]["d_model"]))
            if key not in shapes:
                shapes[key] = shape_limits(settings.torch_device, *key, limit)
            row["shape_limits"] = shapes[key]
            row["wall_s"] = round(time.perf_counter() - t0, 1)
            result["rows"].append(row)
            relate_to_lstm(result["rows"])
            with profile_path.open("a") as f:
                f.write(text)
            _log_row(log, row)
            if on_update:
                on_update(result)
    if options.fixes:
        result["fixes"] = speed_fixes(settings, data, archs)
    result["complete"] = True
    return result


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
