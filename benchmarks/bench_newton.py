"""The Newton (quasi-DEER) LSTM vs the sequential LSTM loop and `nn.LSTM`, by sequence length: cost, measured.

Same weights for all three (one `nn.LSTM` state dict). Per length and weight regime: median wall time of forward +
backward of sum(out^2) after a warm-up, Newton iterations (scans) forward and backward, the final residuals and
fallbacks, the max |difference| from nn.LSTM, analytic training matmul FLOPs per token (docs/flops.md convention,
with the measured iterations), and the sequential depth (dependent steps of forward + backward):

    sequential: 2 T L (one cell step each way per time step and layer)
    newton:     L ((iters_fwd + 1) + iters_bwd + (iters_fwd + iters_bwd) (2 ceil(log2 T) - 1))
                (a cell evaluation or J^T lambda is one step: a matmul over all t; an odd-even scan 2 log2 T - 1 levels)

Weight regimes: "init" = PyTorch's default init (uniform +-1/sqrt(d)); "forget_bias_3" = the same plus 3 on the
forget-gate bias (f ~ 0.95: the long memory that trained LSTMs and forget-bias inits have), where the diagonal
Jacobian needs more iterations. Not a test: timings on a shared machine are noisy; read the ratios. On CPU the
sequential loop is `recurrent_cell.CustomLSTM` (TorchScript); `--device cuda` fills in GPU numbers (cuDNN for
nn.LSTM). Never copy GPU figures from elsewhere into the JSON: run this on the GPU.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_newton
    .venv/bin/python -m benchmarks.bench_newton --device cuda --batch 64 --d-model 512 \
        --out benchmarks/results/newton_cuda.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torch import nn

from benchmarks.bench_minlstm import timed, write_result
from pipeline.models.newton_lstm import NewtonLSTM, NewtonSettings, newton_flops_per_token, newton_step_stats
from pipeline.models.recurrent_cell import CustomLSTM

REGIMES = {"init": 0.0, "forget_bias_3": 3.0}
SCAN_ELEMENTWISE_FLOPS = (
    60  # per unit, token and iteration: Jacobian blocks, affine terms, ~2 combines (not counted)
)


def build(d: int, layers: int, forget_bias: float, settings: NewtonSettings, device: torch.device):
    torch.manual_seed(0)
    ref = nn.LSTM(d, d, layers, batch_first=True)
    with torch.no_grad():
        for k in range(layers):
            getattr(ref, f"bias_hh_l{k}")[d : 2 * d] += forget_bias
    new = NewtonLSTM(d, d, layers, batch_first=True, settings=settings)
    new.load_state_dict(ref.state_dict())
    seq = CustomLSTM(d, d, layers)
    seq.copy_from(ref)
    return ref.to(device), new.to(device), seq.to(device)


def scan_levels(T: int) -> int:
    return max(1, 2 * math.ceil(math.log2(T)) - 1) if T > 1 else 1


def one_case(T: int, regime: str, a: argparse.Namespace, device: torch.device) -> dict:
    settings = NewtonSettings(max_iters=a.max_iters, tol=a.tol)
    ref, new, seq = build(a.d_model, a.layers, REGIMES[regime], settings, device)
    x = torch.randn(a.batch, T, a.d_model, device=device, requires_grad=True)
    ms = {
        "nn_lstm": timed(lambda: ref(x)[0], a.repeats, device),
        "sequential_loop": timed(lambda: seq(x)[0], a.repeats, device),
        "newton": timed(lambda: new(x)[0], a.repeats, device),
    }
    new(x)[0].square().sum().backward()  # the stats of one more step
    stats = newton_step_stats(new)
    with torch.no_grad():
        err = float((new(x)[0] - ref(x)[0]).abs().max())
    n_f, n_b, L, d = stats["newton/iters"], stats["newton/bwd_iters"], a.layers, a.d_model
    flops_seq = L * 24.0 * (2 * d) * d
    flops_newton = L * newton_flops_per_token(d, d, (n_f, n_b))
    depth_newton = L * ((n_f + 1) + n_b + (n_f + n_b) * scan_levels(T))
    return {
        "seq_len": T,
        "weights": regime,
        "ms": ms,
        "ratio_vs_nn_lstm": {k: v / ms["nn_lstm"] for k, v in ms.items()},
        "newton_iters": {"forward": n_f, "backward": n_b},
        "newton_residual": {"forward": stats["newton/residual"], "backward": stats["newton/bwd_residual"]},
        "newton_fallbacks": stats["newton/fallbacks"],
        "max_abs_diff_vs_nn_lstm": err,
        "train_matmul_flops_per_token": {
            "sequential": flops_seq,
            "newton": flops_newton,
            "ratio": flops_newton / flops_seq,
        },  # fmt: skip
        "scan_elementwise_flops_per_token_uncounted": L * SCAN_ELEMENTWISE_FLOPS * d * (n_f + n_b),
        "sequential_depth": {
            "sequential": 2 * T * L,
            "newton": depth_newton,
            "ratio": depth_newton / (2 * T * L),
        },
    }


def project(results: Path, device: str, batches: list[int], d: int, layers: int, vocab: int) -> None:
    """Projected step time (pipeline.cost's max(compute, latency) model, a PROJECTION, not a measurement) of a
    seq2seq LSTM (S = T) on `device`, sequential vs newton with the iterations measured in `results`."""
    from pipeline.cost.accelerators import device_model
    from pipeline.cost.projection import step_cost
    from pipeline.cost.step_time import StepCost
    from pipeline.cost.structure import StepShape
    from pipeline.models.registry import build_model

    dev = device_model(device)
    cfg = {"d_model": d, "n_layers": layers, "attention": True, "vocab_size": vocab}
    newton = build_model("lstm", recurrence="newton", **cfg)
    print(f"PROJECTION on {dev.name} (step latency {dev.step_latency_s * 1e6:.0f} us, "
          f"{dev.flops_per_s / 1e12:.0f} TFLOP/s sustained), lstm d={d} L={layers} V={vocab}, S=T")  # fmt: skip
    print(
        "| B | T | weights | iters fwd/bwd | sequential ms (bound) | newton ms (bound) | newton/sequential |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in json.loads(results.read_text())["results"]:
        T, it = row["seq_len"], row["newton_iters"]
        n_f, n_b = it["forward"], it["backward"]
        for B in batches:
            shape = StepShape(B, T, T)
            seq = step_cost("lstm", cfg, shape)
            flops = newton.flops_per_token(T, T, newton_iters=(n_f, n_b)) * shape.tokens
            # encoder + decoder stacks, each scan level one layer step (a fused kernel per level: optimistic)
            depth = 2 * layers * round((n_f + 1) + n_b + (n_f + n_b) * scan_levels(T)) + (
                seq.depth - 4 * layers * T
            )
            new = StepCost(flops=flops, depth=depth, params=seq.params)
            t_seq, t_new = dev.predict(seq), dev.predict(new)
            print(f"| {B} | {T} | {row['weights']} | {n_f:.0f}/{n_b:.0f} | {t_seq * 1e3:.1f} ({dev.bound(seq)}) | "
                  f"{t_new * 1e3:.1f} ({dev.bound(new)}) | {t_new / t_seq:.2f} |")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    p.add_argument("--weights", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--max-iters", type=int, default=2000, help="high: measure convergence, not the fallback")
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/newton_cpu.json"))
    p.add_argument(
        "--project",
        type=Path,
        metavar="JSON",
        help="print the projected step times from a results JSON's iterations (measures nothing)",
    )
    p.add_argument("--project-device", default="h100-sxm")
    p.add_argument("--project-batches", type=int, nargs="+", default=[8, 64])
    a = p.parse_args(argv)
    if a.project:
        project(a.project, a.project_device, a.project_batches, d=1024, layers=4, vocab=32000)
        return
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {a.device}: torch {torch.__version__} sees no CUDA device")
    rows = []
    for regime in a.weights:
        for T in a.lengths:
            row = one_case(T, regime, a, device)
            rows.append(row)
            print(regime, T, " ".join(f"{k}={v:.1f}ms" for k, v in row["ms"].items()),
                  "iters", row["newton_iters"], f"diff {row['max_abs_diff_vs_nn_lstm']:.1e}", flush=True)  # fmt: skip
    note = "shared machine: other jobs ran at the same time" if device.type == "cpu" else ""
    write_result(a, "one LSTM stack, forward+backward of sum(out^2), median ms; ratio < 1 = faster than nn.LSTM",
                 device, rows, note=note, layers=a.layers, newton_tol=a.tol, newton_max_iters=a.max_iters)  # fmt: skip


if __name__ == "__main__":
    main()
