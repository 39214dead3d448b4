"""Named accelerators for projections: peak FLOP/s, step latency, memory bandwidth (sources cited per entry).

A Python table rather than YAML: the values carry their sources and assumptions next to them, and this package
needs no YAML parser. Peaks are NVIDIA datasheet figures *without* structured sparsity (the datasheets print the
2:4-sparse figure first, which no dense training run reaches). Efficiency and step latency are not datasheet
numbers: they are stated assumptions until `benchmarks/gpu_check.py` measures them on a real GPU
(`device_model(..., calibration=...)` then uses the measured values). The `cpu` entry has no published peak:
its numbers come only from calibration (`benchmarks/bench_cost.py` -> benchmarks/results/cost_cpu.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.cost.step_time import DeviceModel

CPU_CALIBRATION = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "cost_cpu.json"

UVA_LAUNCH = "http://www.cs.virginia.edu/~mwb7w/cuda_support/kernel_overhead.html"
TORCHTITAN = "torchtitan (arXiv:2410.06511): 33-39 % MFU, Llama 3.1 8B, 8 x H100, bf16"
LATENCY_ASSUMPTION = (
    "assumed, not measured here: one layer step = ~2 dependent kernels (GEMM + fused pointwise) at ~4 us each; "
    f"empty back-to-back kernel launches measured at ~3 us ({UVA_LAUNCH}). gpu_check.py measures it."
)


@dataclass(frozen=True)
class Accelerator:
    name: str
    peak_flops: dict[str, float]  # dense, per precision: "bf16", "tf32", "fp32"
    step_latency_s: float
    memory_bytes_per_s: float
    efficiency: float  # assumed sustained fraction of peak for these models (see sources)
    overhead_s: float  # assumed host overhead per step
    sources: dict[str, str] = field(default_factory=dict)

    def peak(self, precision: str) -> float:
        key = precision_key(precision)
        if key not in self.peak_flops:
            raise ValueError(f"accelerator {self.name!r} has no peak for precision {precision!r}")
        return self.peak_flops[key]


ACCELERATORS: dict[str, Accelerator] = {
    "h100-sxm": Accelerator(
        name="NVIDIA H100 SXM5 80GB",
        peak_flops={"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12},
        step_latency_s=8e-6,
        memory_bytes_per_s=3.35e12,
        efficiency=0.35,
        overhead_s=1e-3,
        sources={
            "peak_flops": "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column; dense = half the sparse "
            "figure: BF16 1,979 -> 989.4 TFLOPS, TF32 989 -> 494.7), https://www.nvidia.com/en-us/data-center/h100/",
            "memory_bytes_per_s": "same datasheet: 3.35 TB/s HBM3",
            "step_latency_s": LATENCY_ASSUMPTION,
            "efficiency": f"assumed from {TORCHTITAN}",
            "overhead_s": "assumed: 1 ms of host work per step (Python, optimizer launches)",
        },
    ),
    "h200-sxm": Accelerator(
        name="NVIDIA H200 SXM 141GB",
        peak_flops={"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12},
        step_latency_s=8e-6,
        memory_bytes_per_s=4.8e12,
        efficiency=0.35,
        overhead_s=1e-3,
        sources={
            "peak_flops": "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM column; dense = half the sparse "
            "figure, the same compute as H100 SXM), https://www.nvidia.com/en-us/data-center/h200/",
            "memory_bytes_per_s": "same datasheet: 4.8 TB/s HBM3e",
            "step_latency_s": LATENCY_ASSUMPTION,
            "efficiency": f"assumed as for H100 ({TORCHTITAN})",
            "overhead_s": "assumed: 1 ms of host work per step",
        },
    ),
    "a100-sxm": Accelerator(
        name="NVIDIA A100 SXM4 80GB",
        peak_flops={"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
        step_latency_s=8e-6,
        memory_bytes_per_s=2.039e12,
        efficiency=0.35,
        overhead_s=1e-3,
        sources={
            "peak_flops": "NVIDIA A100 Tensor Core GPU datasheet (SXM column, dense): BF16 312, TF32 156, "
            "FP32 19.5 TFLOPS, https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
            "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf",
            "memory_bytes_per_s": "same datasheet: 2,039 GB/s (80GB SXM)",
            "step_latency_s": LATENCY_ASSUMPTION,
            "efficiency": f"assumed as for H100 ({TORCHTITAN}); NVIDIA's GNMT v2 figure (140,909 tokens/s, "
            "1 x A100, mixed precision) is the check docs/cost_model.md makes against it",
            "overhead_s": "assumed: 1 ms of host work per step",
        },
    ),
}


def match_accelerator(device_name: str) -> str | None:
    """Table key for a torch.cuda.get_device_name() string ("NVIDIA H100 80GB HBM3" -> "h100-sxm"), or None.
    PCIe and NVL variants have other clocks and power limits than the SXM figures here: they get None."""
    name = device_name.upper()
    if "PCIE" in name or "NVL" in name:
        return None
    for key in ACCELERATORS:
        if key.split("-")[0].upper() in name:
            return key
    return None


def precision_key(precision: str) -> str:
    """Trainer precision string -> peak table key: bf16-mixed/bf16-true/bf16 -> bf16, 32-true/fp32 -> fp32."""
    p = str(precision).lower()
    if p.startswith("bf16"):
        return "bf16"
    if p in ("tf32",):
        return "tf32"
    if p in ("32", "32-true", "fp32", "float32"):
        return "fp32"
    raise ValueError(f"precision {precision!r}: expected bf16-mixed, bf16-true, tf32 or 32-true")


def accelerator(name: str) -> Accelerator:
    if name not in ACCELERATORS:
        raise ValueError(
            f"unknown accelerator {name!r}; known: {sorted(ACCELERATORS)} (and 'cpu', calibrated)"
        )
    return ACCELERATORS[name]


def load_calibration(path: str | Path, key: str = "threads_1") -> DeviceModel:
    """The calibrated DeviceModel stored in a bench_cost/gpu_check JSON (`calibration[key]["model"]`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no calibration (run `python -m benchmarks.bench_cost` first)")
    data = json.loads(path.read_text())
    try:
        m = data["calibration"][key]["model"]
    except KeyError as e:
        raise ValueError(f"{path}: no calibration[{key!r}].model in it") from e
    return DeviceModel(**m)


def device_model(
    name: str, precision: str = "bf16-mixed", calibration: dict[str, Any] | None = None
) -> DeviceModel:
    """The step-time model of a named device. `cpu` comes from the committed CPU calibration; GPU entries use
    the table's peak x assumed efficiency, unless `calibration` (a gpu_check.py fit: flops_per_s,
    step_latency_s, overhead_s) overrides them with measured values."""
    if name == "cpu":
        return load_calibration(CPU_CALIBRATION)
    acc = accelerator(name)
    m = DeviceModel(
        name=acc.name,
        flops_per_s=acc.peak(precision) * acc.efficiency,
        step_latency_s=acc.step_latency_s,
        overhead_s=acc.overhead_s,
        bytes_per_s=acc.memory_bytes_per_s,
        form="max",
    )
    if calibration:
        m = DeviceModel(**{**m.to_dict(), **{k: calibration[k] for k in calibration if k in m.to_dict()}})
    return m
