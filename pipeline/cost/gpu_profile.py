"""The fitted GPU profile: the dimensionless coefficients that turn a datasheet into a step time (one JSON file).

Fitted on published measurements by `python -m pipeline.cost.gpu_fit --write` (docs/cost_model.md); read by
`accelerators.device_model` for every GPU in the table. Efficiencies are fractions of the datasheet's peak or
bandwidth at the run's precision, so one profile serves V100, A100 and H100 alike: what does not transfer
across generations is the error the held-out V100 rows measure.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

PROFILE_PATH = Path(__file__).resolve().with_name("gpu_profile.json")


@dataclass(frozen=True)
class GpuProfile:
    step_efficiency: (
        float  # fraction of peak a training step's parallel work sustains (GEMMs + what runs beside)
    )
    overhead_s: float  # fixed per step: host, optimizer launches, loss
    gemm_efficiency: float  # fraction of peak of the large weight-gradient GEMM (DeepBench's third column)
    weight_efficiency: float  # fraction of HBM bandwidth a wide recurrent cell streams its weights at
    d_half: float  # width at which a recurrent cell streams its weights at half its wide-cell speed
    cell_latency_s: float  # per recurrent cell on the chain
    step_efficiency_fp32: float = 0.5  # the same two in fp32 on CUDA cores ("32-true"), which reach more of
    gemm_efficiency_fp32: float = 0.8  # their (8-16x lower) peak than tensor cores do of theirs
    allreduce_efficiency: float = 1.0  # fraction of one NVLink direction the gradient all-reduce costs at
    # width at which a recurrent cell's thin GEMM reaches half the peak FLOP rate (its output tiles grow with the
    # width): tensor cores, and CUDA cores in fp32, which fill the SMs with fewer tiles
    gemm_d_half: float = 0.0
    gemm_d_half_fp32: float = 0.0

    def efficiencies(self, precision_key: str) -> tuple[float, float]:
        """(step, GEMM) efficiency at a peak-table precision key: tensor cores, or CUDA cores for fp32."""
        if precision_key == "fp32":
            return self.step_efficiency_fp32, self.gemm_efficiency_fp32
        return self.step_efficiency, self.gemm_efficiency

    def cell_d_half(self, precision_key: str) -> float:
        """The cell GEMM's half-peak width at a precision key (`recurrent.CellModel.gemm_d_half`)."""
        return self.gemm_d_half_fp32 if precision_key == "fp32" else self.gemm_d_half

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_profile(path: str | Path = PROFILE_PATH) -> GpuProfile:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no GPU profile (run `python -m pipeline.cost.gpu_fit --write`)")
    data = json.loads(path.read_text())
    names = {f.name for f in fields(GpuProfile)}
    try:
        return GpuProfile(**{k: v for k, v in data["profile"].items() if k in names})
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: no valid 'profile' in it ({e})") from e


def save_profile(profile: GpuProfile, extra: dict[str, Any], path: str | Path = PROFILE_PATH) -> None:
    Path(path).write_text(json.dumps({"profile": profile.to_dict(), **extra}, indent=1) + "\n")
