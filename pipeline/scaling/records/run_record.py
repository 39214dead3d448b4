"""One run's result record (``<run>/result.json``): load, validate, save.

The sweep runner writes ``SWEEP_DIR/<run_name>/result.json`` when a run finishes; the fitter and the report read
them back here. Validation is strict because a silently wrong record (a loss in bits, a missing token count) would
bend every fitted exponent without any visible error.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.scaling.records.json_file import read_json, save_json_atomic
from pipeline.scaling.records.run_dir import RESULT_FILE as RESULT_FILE  # its home is run_dir


@dataclass(frozen=True)
class RunRecord:
    """What one finished run contributes to the scaling study (losses in nats per target token)."""

    run: str
    arch: str
    params: int
    non_embedding_params: int
    # training FLOPs per target token, from the model's own estimate; a memory task's output projection counted at
    # its answers only, where it runs (config["output_projection_share"], docs/flops.md)
    flops_per_token: float
    tokens: int  # target tokens trained on (repeats included)
    compute: float  # flops_per_token * tokens
    epochs: float  # tokens / target tokens in the corpus; > 1 means data was repeated
    final_valid_loss: float
    best_valid_loss: float
    loss_by_position: list[float] = field(default_factory=list)  # NaN where a position had no tokens
    wall_time_s: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    # Optional fields (records written before they existed load with the defaults).
    seed: int | None = None  # the run's `seed`
    lr: float | None = None  # the run's peak `optim.lr`
    # every validation point of the run: [{"step": int, "tokens": int, "loss": float}, ...] in step order
    valid_curve: list[dict[str, float]] = field(default_factory=list)
    unigram_entropy: float | None = None  # nats per target token of the valid targets' unigram distribution
    flops_per_token_no_output: float | None = None  # flops_per_token without the output projection
    # measured time: {"tokens_per_s", "flops_per_s", "train_wall_s",
    #                 "step_s": {"forward", "backward", "optimizer", "data_wait", "total"}} (seconds per step)
    timing: dict[str, Any] = field(default_factory=dict)
    # where it ran: {"device": "cpu" | "NVIDIA H100 80GB HBM3", "device_type": "cpu" | "h100" | ..., "count": int,
    #                "precision": "32-true" | "bf16-mixed", "threads": int}
    hardware: dict[str, Any] = field(default_factory=dict)
    # data.task=mqar/copy: answer accuracy and loss, by bucket, with the task's N/L/V and the model's
    # state size (pipeline/training/answer_metrics.py); {} for the text tasks
    answer_metrics: dict[str, Any] = field(default_factory=dict)
    # the add-one train-unigram cross-entropy on the valid targets (the "learned nothing" yardstick);
    # LM runs: Kneser-Ney floors {"bigram"/"trigram": {"loss", "by_position"}, ...} (training/count_floors.py) and the
    # truncation curve {"contexts", "curve", "tokens", "unit", "n_clusters", "file"} (training/truncation_run.py)
    unigram_xent: float | None = None
    count_floors: dict[str, Any] = field(default_factory=dict)
    truncation: dict[str, Any] = field(default_factory=dict)
    # a run that `train.stop_at_accuracy` stopped before train.max_steps: {"step", "max_steps", "metric", "value",
    # "threshold", "reason"} (pipeline/training/accuracy_stop.py); {} for a run that trained to max_steps
    early_stop: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # JSON has no NaN: positions without tokens are written as null.
        d["loss_by_position"] = [None if math.isnan(x) else x for x in self.loss_by_position]
        return d


def _positive_number(source: str, key: str, value: Any, integer: bool = False) -> float:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{source}: key {key!r} must be {kind}, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{source}: key {key!r} must be finite and > 0, got {value!r}")
    return value


def record_from_dict(d: Any, source: str = "<record>") -> RunRecord:
    """Validate a parsed result.json; any missing key or bad value raises ValueError naming ``source`` and key."""
    if not isinstance(d, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(d).__name__}")
    required = [
        "run",
        "arch",
        "params",
        "non_embedding_params",
        "flops_per_token",
        "tokens",
        "compute",
        "epochs",
        "final_valid_loss",
        "best_valid_loss",
        "loss_by_position",
        "wall_time_s",
        "config",
    ]
    for key in required:
        if key not in d:
            raise ValueError(f"{source}: missing key {key!r}")
    for key in ("run", "arch"):
        if not isinstance(d[key], str) or not d[key]:
            raise ValueError(f"{source}: key {key!r} must be a non-empty string, got {d[key]!r}")
    for key in ("params", "non_embedding_params", "tokens"):
        _positive_number(source, key, d[key], integer=True)
    for key in ("flops_per_token", "compute", "epochs", "final_valid_loss", "best_valid_loss"):
        _positive_number(source, key, d[key])
    if (
        isinstance(d["wall_time_s"], bool)
        or not isinstance(d["wall_time_s"], int | float)
        or d["wall_time_s"] < 0
    ):
        raise ValueError(f"{source}: key 'wall_time_s' must be a number >= 0, got {d['wall_time_s']!r}")
    if d["non_embedding_params"] > d["params"]:
        raise ValueError(
            f"{source}: key 'non_embedding_params' ({d['non_embedding_params']}) exceeds 'params' ({d['params']})"
        )
    expected = d["flops_per_token"] * d["tokens"]
    if not math.isclose(d["compute"], expected, rel_tol=1e-3):
        raise ValueError(
            f"{source}: key 'compute' ({d['compute']:.4g}) != flops_per_token * tokens ({expected:.4g})"
        )
    if d["best_valid_loss"] > d["final_valid_loss"] * (1 + 1e-9):
        raise ValueError(
            f"{source}: key 'best_valid_loss' ({d['best_valid_loss']}) is above 'final_valid_loss' "
            f"({d['final_valid_loss']})"
        )
    positions = d["loss_by_position"]
    if not isinstance(positions, list):
        raise ValueError(f"{source}: key 'loss_by_position' must be a list, got {type(positions).__name__}")
    losses = []
    for t, x in enumerate(positions):
        if x is None:
            losses.append(math.nan)
        elif isinstance(x, int | float) and not isinstance(x, bool) and (math.isnan(x) or x >= 0):
            losses.append(float(x))
        else:
            raise ValueError(f"{source}: key 'loss_by_position'[{t}] must be a loss >= 0 or null, got {x!r}")
    if not isinstance(d["config"], dict):
        raise ValueError(f"{source}: key 'config' must be an object, got {type(d['config']).__name__}")
    return RunRecord(
        run=d["run"],
        arch=d["arch"],
        params=int(d["params"]),
        non_embedding_params=int(d["non_embedding_params"]),
        flops_per_token=float(d["flops_per_token"]),
        tokens=int(d["tokens"]),
        compute=float(d["compute"]),
        epochs=float(d["epochs"]),
        final_valid_loss=float(d["final_valid_loss"]),
        best_valid_loss=float(d["best_valid_loss"]),
        loss_by_position=losses,
        wall_time_s=float(d["wall_time_s"]),
        config=d["config"],
        **_optional_fields(d, source),
    )


def _optional_fields(d: dict[str, Any], source: str) -> dict[str, Any]:
    """The optional keys of a record, checked (absent keys keep the dataclass defaults)."""
    out: dict[str, Any] = {}
    if d.get("seed") is not None:
        if isinstance(d["seed"], bool) or not isinstance(d["seed"], int):
            raise ValueError(f"{source}: key 'seed' must be an integer, got {d['seed']!r}")
        out["seed"] = d["seed"]
    for key in ("lr", "unigram_entropy", "flops_per_token_no_output", "unigram_xent"):
        if d.get(key) is not None:
            out[key] = float(_positive_number(source, key, d[key]))
    curve = d.get("valid_curve", [])
    if not isinstance(curve, list):
        raise ValueError(f"{source}: key 'valid_curve' must be a list, got {type(curve).__name__}")
    for i, point in enumerate(curve):
        if not isinstance(point, dict) or not {"step", "tokens", "loss"} <= set(point):
            raise ValueError(
                f"{source}: key 'valid_curve'[{i}] must hold step, tokens and loss, got {point!r}"
            )
        _positive_number(source, f"valid_curve[{i}].loss", point["loss"])
    out["valid_curve"] = curve
    for key in ("timing", "hardware", "answer_metrics", "count_floors", "truncation", "early_stop"):
        value = d.get(key, {})
        if not isinstance(value, dict):
            raise ValueError(f"{source}: key {key!r} must be an object, got {type(value).__name__}")
        out[key] = value
    stop = out["early_stop"]
    if stop:
        for key in ("step", "max_steps"):
            _positive_number(source, f"early_stop.{key}", stop.get(key), integer=True)
        if stop["step"] > stop["max_steps"]:
            raise ValueError(
                f"{source}: key 'early_stop.step' ({stop['step']}) is past its max_steps ({stop['max_steps']})"
            )
    return out


def load_record(path: str | Path) -> RunRecord:
    path = Path(path)
    return record_from_dict(read_json(path), source=str(path))


def save_record(path: str | Path, record: RunRecord) -> Path:
    """Validate and atomically write one run's result.json."""
    record_from_dict(record.to_dict(), source=str(path))
    return save_json_atomic(path, record.to_dict())
