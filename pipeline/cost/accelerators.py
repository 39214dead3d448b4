"""Named accelerators for projections: peak FLOP/s per precision, memory and NVLink bandwidth (sources cited).

A Python table rather than YAML: the values carry their sources next to them, and this package needs no YAML
parser. Peaks are NVIDIA datasheet figures *without* structured sparsity (the datasheets print the 2:4-sparse figure
first, which no dense training run reaches). Efficiencies, latencies and the per-step overhead are not datasheet
numbers: `device_model` takes them from the profile fitted on published GPU measurements (`gpu_profile.json`,
`pipeline.cost.gpu_fit`), or from a `benchmarks/gpu_check.py` calibration of a real GPU. NVIDIA's GNMT and
Transformer tables were measured on A100 **40GB** (DGX A100): `a100-sxm-40gb`. The `cpu` entry has no published
peak: its numbers come only from calibration (`benchmarks/bench_cost.py` -> benchmarks/results/cost_cpu.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.cost.gpu_profile import GpuProfile, load_profile
from pipeline.cost.recurrent import CellModel
from pipeline.cost.step_time import DeviceModel

CPU_CALIBRATION = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "cost_cpu.json"

V100_SHEET = (
    "NVIDIA Tesla V100 datasheet (SXM2 column): FP32 15.7, Tensor (fp16) 125 TFLOPS, HBM2 900 GB/s, NVLink 300 GB/s, "
    "https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf"
)
A100_SHEET = (
    "NVIDIA A100 Tensor Core GPU datasheet (SXM columns, dense): FP16/BF16 312, TF32 156, FP32 19.5 TFLOPS; "
    "HBM2 1,555 GB/s (40GB), HBM2e 2,039 GB/s (80GB); NVLink 600 GB/s, "
    "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
)
H100_SHEET = (
    "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column; dense = half the sparse figure: FP16/BF16 1,979 -> "
    "989.4, TF32 989 -> 494.7 TFLOPS; FP32 66.9), HBM3 3.35 TB/s, NVLink 900 GB/s, "
    "https://www.nvidia.com/en-us/data-center/h100/"
)
H200_SHEET = (
    "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM column: the same compute as H100 SXM), HBM3e 4.8 TB/s, "
    "NVLink 900 GB/s, https://www.nvidia.com/en-us/data-center/h200/"
)


@dataclass(frozen=True)
class Accelerator:
    name: str
    peak_flops: dict[str, float]  # dense, per precision key: "bf16", "fp16", "tf32", "fp32"
    memory_bytes_per_s: float
    nvlink_bytes_per_s: float = 0.0  # per GPU, both directions together (datasheet figure)
    sources: dict[str, str] = field(default_factory=dict)

    def peak(self, precision: str) -> float:
        key = precision_key(precision)
        if key not in self.peak_flops:
            raise ValueError(
                f"accelerator {self.name!r} has no {key} peak (precision {precision!r}); it has {sorted(self.peak_flops)}"
            )
        return self.peak_flops[key]


def _acc(name: str, peaks: dict[str, float], bandwidth: float, nvlink: float, sheet: str) -> Accelerator:
    # datasheet numbers only: efficiencies, latencies and overheads come from the fitted profile (`device_model`)
    return Accelerator(name=name, peak_flops=peaks, memory_bytes_per_s=bandwidth, nvlink_bytes_per_s=nvlink,
                       sources={"peak_flops": sheet, "memory_bytes_per_s": sheet, "nvlink_bytes_per_s": sheet})  # fmt: skip


HOPPER = {"bf16": 989.4e12, "fp16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12}
AMPERE = {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12}
ACCELERATORS: dict[str, Accelerator] = {
    "h100-sxm": _acc("NVIDIA H100 SXM5 80GB", HOPPER, 3.35e12, 900e9, H100_SHEET),
    "h200-sxm": _acc("NVIDIA H200 SXM 141GB", HOPPER, 4.8e12, 900e9, H200_SHEET),
    "a100-sxm": _acc("NVIDIA A100 SXM4 80GB", AMPERE, 2.039e12, 600e9, A100_SHEET),
    # NVIDIA's GNMT and Transformer tables were measured on this one (DGX A100, 8x A100 40GB)
    "a100-sxm-40gb": _acc("NVIDIA A100 SXM4 40GB", AMPERE, 1.555e12, 600e9, A100_SHEET),
    # DGX-1 (V100 SXM2 16GB) of NVIDIA's tables and DeepBench; no bf16, no TF32. DGX-2H's V100 SXM3 32GB runs at
    # higher clocks than this datasheet (its rows are held-out checks of this entry, not of a separate one).
    "v100-sxm2": _acc("NVIDIA Tesla V100 SXM2", {"fp16": 125e12, "fp32": 15.7e12}, 900e9, 300e9, V100_SHEET),
}


def match_accelerator(device_name: str) -> str | None:
    """Table key for a torch.cuda.get_device_name() string ("NVIDIA H100 80GB HBM3" -> "h100-sxm"), or None.
    PCIe and NVL variants have other clocks and power limits than the SXM figures here: they get None."""
    name = device_name.upper()
    if "PCIE" in name or "NVL" in name:
        return None
    if "A100" in name and "40GB" in name:
        return "a100-sxm-40gb"
    for key in ACCELERATORS:
        if key.split("-")[0].upper() in name:
            return key
    return None


PRECISIONS = ("bf16-mixed", "bf16-true", "16-mixed", "16-true", "tf32", "32-true")


def precision_key(precision: str) -> str:
    """Trainer precision string -> peak table key: bf16-mixed/bf16-true -> bf16, 16-mixed/16-true -> fp16,
    tf32 -> tf32 (TF32 tensor cores), 32-true -> fp32 (what PyTorch's matmuls default to)."""
    p = str(precision).lower()
    if p.startswith("bf16"):
        return "bf16"
    if p in ("16", "16-mixed", "16-true", "fp16", "float16", "half"):
        return "fp16"
    if p in ("tf32",):
        return "tf32"
    if p in ("32", "32-true", "fp32", "float32"):
        return "fp32"
    raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")


def bytes_per_weight(precision: str) -> float:
    """Bytes a GEMM reads per weight at this precision (autocast casts fp32 master weights to 16 bits)."""
    return 2.0 if precision_key(precision) in ("bf16", "fp16") else 4.0


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
    name: str,
    precision: str = "bf16-mixed",
    calibration: dict[str, Any] | None = None,
    profile: GpuProfile | None = None,
) -> DeviceModel:
    """The step-time model of a named device. `cpu` comes from the committed CPU calibration. A GPU entry is its
    datasheet (peak at `precision`, bandwidth) times the fitted profile (`gpu_profile.json`, or `profile`), with
    the cuDNN cell model for the recurrent steps; `calibration` (a gpu_check.py fit: flops_per_s,
    step_latency_s, overhead_s) overrides those keys with values measured on the device."""
    if name == "cpu":
        return load_calibration(CPU_CALIBRATION)
    acc = accelerator(name)
    prof = profile or load_profile()
    peak = acc.peak(precision)
    key = precision_key(precision)
    step_eff, gemm_eff = prof.efficiencies(key)
    cell = CellModel(peak_flops_per_s=peak, memory_bytes_per_s=acc.memory_bytes_per_s,
                     bytes_per_weight=bytes_per_weight(precision), gemm_efficiency=gemm_eff,
                     weight_efficiency=prof.weight_efficiency, d_half=prof.d_half,
                     latency_s=prof.cell_latency_s, gemm_d_half=prof.cell_d_half(key))  # fmt: skip
    m = DeviceModel(
        name=acc.name,
        flops_per_s=peak * step_eff,
        step_latency_s=prof.cell_latency_s,
        overhead_s=prof.overhead_s,
        bytes_per_s=acc.memory_bytes_per_s,
        form="max",
        cell=cell,
    )
    if calibration:
        m = replace(m, **{k: calibration[k] for k in calibration if k in m.to_dict() and k != "cell"})
    return m
