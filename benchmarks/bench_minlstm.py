"""minLSTM's parallel log-space scan vs its sequential form vs `nn.LSTM` (and our custom LSTM cell), by length.

One layer, forward + backward of sum(outputs^2), median wall time of `--repeats` runs after a warm-up, on CPU or
(`--device cuda`) a GPU, where nn.LSTM is cuDNN's fused kernel and the scan is ATen's `logcumsumexp`.
Writes JSON with the machine, thread count, load average and, per sequence length, milliseconds and the ratio
to nn.LSTM (< 1 = faster than nn.LSTM). Not a test: timings on a shared machine are noisy; read the ratios.

    .venv/bin/python benchmarks/bench_minlstm.py --out benchmarks/results/minlstm_scan.json
    .venv/bin/python benchmarks/bench_minlstm.py --device cuda --batch 64 --d-model 512 \
        --out benchmarks/results/minlstm_scan_cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.models.minlstm import H0, MinLSTMLayer, minlstm_sequential
from pipeline.models.recurrent_cell import CustomLSTM
from pipeline.training.throughput import cpu_name


def machine(device: torch.device) -> dict[str, Any]:
    """Where a scan benchmark ran (bench_minlstm, bench_newton)."""
    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1m_at_end": os.getloadavg()[0],
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def timed(fn: Callable[[], torch.Tensor], repeats: int, device: torch.device) -> float:
    """Median milliseconds of fn() + backward (on a GPU, waiting for the kernels to finish)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn().square().sum().backward()  # warm-up (TorchScript profiles its first runs)
    fn().square().sum().backward()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn().square().sum().backward()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def candidates(d: int, x: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    torch.manual_seed(0)
    lstm = nn.LSTM(d, d, batch_first=True).to(x.device)
    minlstm = MinLSTMLayer(d, d).to(x.device)
    h0 = torch.full((x.size(0), d), H0, device=x.device)
    custom_on = CustomLSTM(d, d, 1, temporal_residual=True).to(x.device)
    custom_off = CustomLSTM(d, d, 1, temporal_residual=False).to(x.device)
    return {
        "nn_lstm": lambda: lstm(x)[0],
        "minlstm_parallel": lambda: minlstm(x, h0.log()).exp(),
        "minlstm_sequential": lambda: minlstm_sequential(*minlstm.proj(x).chunk(3, dim=-1), h0),
        "custom_lstm": lambda: custom_on(x)[0],
        "custom_lstm_no_cell_residual": lambda: custom_off(x)[0],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/minlstm_scan.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {a.device}: torch {torch.__version__} sees no CUDA device")
    rows = []
    for T in a.lengths:
        x = torch.randn(a.batch, T, a.d_model, device=device, requires_grad=True)
        ms = {name: timed(fn, a.repeats, device) for name, fn in candidates(a.d_model, x).items()}
        rows.append(
            {"seq_len": T, "ms": ms, "ratio_vs_nn_lstm": {k: v / ms["nn_lstm"] for k, v in ms.items()}}
        )
        print(T, " ".join(f"{k}={v:.1f}ms" for k, v in ms.items()), flush=True)
    what = "one layer, forward+backward of sum(out^2), median ms; ratio < 1 = faster than nn.LSTM"
    write_result(a, what, device, rows)


def write_result(a: Any, what: str, device: torch.device, rows: list, **extra: Any) -> None:
    """The scan benchmarks' JSON (bench_minlstm, bench_newton): what, where, the shared settings and the rows."""
    result = {
        "what": what,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "machine": machine(device),
        "batch": a.batch,
        "d_model": a.d_model,
        **extra,
        "repeats": a.repeats,
        "results": rows,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
