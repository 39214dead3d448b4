"""Projected tokens/s and GPU-hours of an architecture on a named accelerator (always labelled as projections).

A projection is the cost model evaluated on hardware this project did not run on: structure (FLOPs, depth,
parameters, recurrent cells) from `structure`, speed from `accelerators` (datasheet peak and bandwidth x the
profile fitted on published GPU measurements, `gpu_profile.json`) or a calibration. It answers "how long would
this run take there", not "how long did it take".

    python -m pipeline.cost.projection        # every published figure next to its projection, and the ratio
    python -m pipeline.cost.projection --accelerator h100-sxm --arch lstm --d-model 1024 --n-layers 4 \
        --batch 128 --src-len 32 --tgt-len 32 [--gpus 8]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.cost.accelerators import device_model
from pipeline.cost.multi_gpu import allreduce_s, data_parallel_tokens_per_s
from pipeline.cost.step_time import DeviceModel
from pipeline.cost.structure import KNOWN_ARCHS, StepShape, step_cost

__all__ = [
    "LABEL",
    "Projection",
    "model_config_of",
    "project",
    "projected_seconds",
    "shape_from_run_config",
    "step_cost",
]

LABEL = "projection (cost model, not a measurement)"


@dataclass(frozen=True)
class Projection:
    arch: str
    device: str
    shape: StepShape
    step_s: float
    tokens_per_s: float
    bound: str  # "compute" or "latency": which term of the max binds
    compute_s: float
    latency_s: float
    label: str = LABEL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def project(arch: str, model_cfg: Mapping[str, Any], shape: StepShape, device: DeviceModel) -> Projection:
    """Seconds per step and target tokens/s of `arch` at `shape` on `device`."""
    cost = step_cost(arch, model_cfg, shape)
    t = device.predict(cost)
    return Projection(arch, device.name, shape, t, shape.tokens / t, device.bound(cost), device.compute_s(cost),
                      device.latency_s(cost))  # fmt: skip


def project_data_parallel(arch: str, model_cfg: Mapping[str, Any], shape: StepShape, device: DeviceModel,
                          accelerator: str, n_gpus: int, grad_bytes: float = 4.0) -> float:  # fmt: skip
    """Target tokens/s summed over `n_gpus` GPUs, each running steps of `shape`, plus the gradient all-reduce over
    the accelerator's NVLink (`multi_gpu`; 4 bytes per gradient: Lightning keeps fp32 gradients under autocast)."""
    from pipeline.cost.accelerators import accelerator as table_entry
    from pipeline.cost.gpu_profile import load_profile

    cost = step_cost(arch, model_cfg, shape)
    link = table_entry(accelerator).nvlink_bytes_per_s
    comm = allreduce_s(cost.params, grad_bytes, n_gpus, link, load_profile().allreduce_efficiency)
    return data_parallel_tokens_per_s(device.predict(cost), shape.tokens, comm, n_gpus)


def projected_seconds(
    arch: str,
    model_cfg: Mapping[str, Any],
    shape: StepShape,
    tokens: float,
    device: DeviceModel,
    flops: float | None = None,
    params: int | None = None,
) -> float:
    """Seconds to train `tokens` target tokens in steps of `shape` (one device): the one projection of training
    time (the scaling report's GPU-hours use it). The step is `step_cost`'s, recurrent cells included, so a GPU
    times an LSTM with its calibrated cell model; `flops` (per step) and `params` override the model's formula
    (a run record already holds them)."""
    cost = step_cost(arch, model_cfg, shape, flops=flops, params=params)
    return device.predict(cost) * tokens / shape.tokens


def shape_from_run_config(config: Mapping[str, Any], src_len: int | None = None,
                          tgt_len: int | None = None) -> StepShape:  # fmt: skip
    """A run's per-device step shape from its resolved config: `mean_lengths` (written by the sweep runner) and
    `data.batch_tokens` (the loader packs rows so that rows x longest length <= batch_tokens). `src_len`/`tgt_len`
    override the lengths at the same batch_tokens (the context-length projection)."""
    lengths = config.get("mean_lengths") or {}
    s = int(src_len or lengths.get("src") or 0)
    t = int(tgt_len or lengths.get("tgt") or 0)
    batch_tokens = (config.get("data") or {}).get("batch_tokens")
    if s < 1 or t < 1 or not batch_tokens:
        raise ValueError("run config needs mean_lengths.src/tgt and data.batch_tokens for a step shape")
    return StepShape(max(1, int(batch_tokens) // max(s, t)), s, t)


def model_config_of(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(arch, model keys with vocab_size) from a resolved run config."""
    model = dict(config.get("model") or {})
    arch = model.pop("arch", None)
    if arch not in KNOWN_ARCHS:
        raise ValueError(f"run config model.arch={arch!r}: the cost model knows {sorted(KNOWN_ARCHS)}")
    if "vocab_size" not in model:
        vocab = (config.get("data") or {}).get("vocab_size")
        if not vocab:
            raise ValueError("run config has neither model.vocab_size nor data.vocab_size")
        model["vocab_size"] = int(vocab)
    return arch, model


def print_published() -> None:
    """Every published figure next to the projection with the committed profile, counted as its source counts."""
    from pipeline.cost.gpu_fit import check, summary  # builds the two published models: torch
    from pipeline.cost.gpu_profile import load_profile
    from pipeline.cost.published import GNMT_TOKENS, TRANSFORMER_TOKENS

    checks = check(load_profile())
    print(f"{LABEL}, against published GPU measurements (pipeline/cost/published.py)")
    print(f"  gnmt_v2: {GNMT_TOKENS}\n  transformer_big: {TRANSFORMER_TOKENS}")
    print(f"  deepbench: {checks[-1].convention}; ratio = projected / published")
    print(f"  {'figure':<58} {'split':<9} {'published':>12} {'projected':>12} {'unit':<5} {'ratio':>6}")
    for c in checks:
        print(
            f"  {c.key:<58} {c.split:<9} {c.published:>12,.1f} {c.projected:>12,.1f} {c.unit:<5} {c.ratio:>6.3f}"
        )
    for split, st in summary(checks).items():
        print(
            f"  {split}: {st['n']} figures, median factor {st['median_factor']:.3f}, max {st['max_factor']:.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print_published()
        return 0
    p = argparse.ArgumentParser(
        prog="python -m pipeline.cost.projection", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--accelerator",
        default="h100-sxm",
        help="h100-sxm | h200-sxm | a100-sxm | a100-sxm-40gb | v100-sxm2 | cpu",
    )
    p.add_argument(
        "--precision",
        default="bf16-mixed",
        help="bf16-mixed | bf16-true | 16-mixed | 16-true | tf32 | 32-true",
    )
    p.add_argument("--arch", choices=KNOWN_ARCHS, nargs="+", default=["lstm", "transformer", "minlstm"])
    p.add_argument("--d-model", type=int, default=1024)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--n-heads", type=int, default=16)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--src-len", type=int, default=32)
    p.add_argument("--tgt-len", type=int, default=32)
    p.add_argument(
        "--gpus", type=int, default=1, help="data parallel over this many GPUs (NVLink all-reduce)"
    )
    p.add_argument(
        "--published", action="store_true", help="the published-figure check (the default without arguments)"
    )
    args = p.parse_args(argv)
    if args.published:
        print_published()
        return 0
    device = device_model(args.accelerator, args.precision)
    shape = StepShape(args.batch, args.src_len, args.tgt_len)
    print(f"{LABEL}: {device.name}, {args.precision}, batch {shape.batch} x ({shape.src_len} -> {shape.tgt_len})"
          + (f" per GPU, {args.gpus} GPUs" if args.gpus > 1 else ""))  # fmt: skip
    for arch in args.arch:
        cfg: dict[str, Any] = {"vocab_size": args.vocab, "d_model": args.d_model, "n_layers": args.n_layers}
        if arch == "transformer":
            cfg["n_heads"] = args.n_heads
        pr = project(arch, cfg, shape, device)
        line = f"  {arch:>22}: {pr.tokens_per_s:>12,.0f} tokens/s  ({pr.step_s * 1e3:.2f} ms/step, {pr.bound}-bound)"
        if args.gpus > 1 and args.accelerator != "cpu":
            tps = project_data_parallel(arch, cfg, shape, device, args.accelerator, args.gpus)
            line += f"; {args.gpus} GPUs: {tps:,.0f} tokens/s ({tps / (args.gpus * pr.tokens_per_s):.2f} of linear)"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
