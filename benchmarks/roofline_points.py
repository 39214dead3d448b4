"""The roofline's sizes: for each, the batches and, per architecture, the model and its two training loops.

Sizes (`roofline_names.SIZE_CHOICES`; `--roofline-sizes`): `tiny` (configs/tiny models, 256-token real batches), `demo`
(configs/demo models, 2048-token batches), `recall` (both `RECALL_POINTS`, or one of them by its label: decoder-only
language models, width d, 2 layers, 64 rows of L tokens, random tokens over a 256-token vocabulary with full
logits) and `mqar` (the recall study's step itself: the MQAR task at `benchmarks/bench_mqar.py`'s shape, d 32, L 32,
V 64, 256 sequences a batch, the answer-only forward `AnswerForward` that `train.compile` compiles for the memory
tasks). `lstm_no_cell_residual` and `minlstm` have no demo file: they take the demo LSTM's keys; `lstm_newton` is
`lstm` with `recurrence: newton`.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Batch, BenchSettings, PlainLoop, real_batches
from benchmarks.roofline_names import RECALL, RECALL_POINTS
from pipeline.config import OptimConfig, load_config


@dataclass
class Point:
    """One measured size: its label, its family (`SIZE_NAMES`), the batches and the vocabulary."""

    label: str
    size: str
    batches: list[Batch]
    vocab_size: int
    keys: dict[str, Any] = field(default_factory=dict)


@dataclass
class Subject:
    """One architecture at one point: its model keys, the seeded model, and how to build a loop on a copy of it
    (`make_loop(model_copy, compile_setting, backend)`)."""

    model_cfg: dict[str, Any]
    model: torch.nn.Module
    make_loop: Callable[[torch.nn.Module, str, Any], PlainLoop]


def model_section(
    size: str, arch: str, d_model: int | None = None, seq_len: int | None = None
) -> dict[str, Any]:
    """The `model:` keys of `arch` at `size` (`tiny`, `demo` or `recall`; see the module docstring)."""
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


def wanted_points(sizes: tuple[str, ...]) -> list[str]:
    """Size names and recall labels -> the point labels to measure, in order, once each."""
    out: list[str] = []
    for s in sizes:
        for label in RECALL_POINTS if s == "recall" else (s,):
            if label not in out:
                out.append(label)
    return out


def points(settings: BenchSettings, labels: list[str], data: dict[str, Any]) -> list[Point]:
    """The batches of each point label (`wanted_points`)."""
    n = 2 if settings.quick else 4
    out = []
    for label in labels:
        if label.startswith("recall-"):
            d, seq_len = (int(x[1:]) for x in label.split("-")[1:])
            rows = RECALL["rows"] // (4 if settings.quick else 1)
            batches = lm_batches(rows, seq_len, RECALL["vocab_size"], n)
            keys = {"d_model": d, "seq_len": seq_len}
            out.append(Point(label, "recall", batches, RECALL["vocab_size"], keys))
        elif label == "mqar":
            out.append(mqar_point(settings))
        else:
            batch_tokens = {"tiny": 256, "demo": 2048}[label]
            batches = real_batches(settings.data_dir, batch_tokens, n, max_len=data["max_len"])
            out.append(Point(label, label, batches, data["vocab_size"]))
    return out


def mqar_point(settings: BenchSettings) -> Point:
    """The MQAR task at the mqar suite's shape (its quick shape with --quick), generated into a temporary
    directory and read by the run's own loader."""
    from benchmarks.bench_mqar import QUICK, MqarShape, bench_config, mqar_batches

    shape = QUICK if settings.quick else MqarShape()
    n = 2 if settings.quick else 4
    with tempfile.TemporaryDirectory(prefix="roofline-mqar-") as tmp:
        batches = mqar_batches(bench_config(settings, shape, "lstm", Path(tmp), n), n)
    label = f"mqar-d{shape.d_model}-L{shape.seq_len}"
    return Point(label, "mqar", batches, shape.vocab_size, {"shape": shape})


class AnswerLoop(PlainLoop):
    """The memory tasks' training step (`Seq2SeqModule.training_step` for `data.task: mqar`): the answer-only
    loss through `forward`, a `TrainingForward` around `AnswerForward`."""

    def loss(self, batch: Batch) -> torch.Tensor:
        from pipeline.training.answer_metrics import answer_loss

        return answer_loss(self.forward, batch, self.optim.label_smoothing)


def subject(settings: BenchSettings, point: Point, arch: str, data: dict[str, Any]) -> Subject:
    """`arch`'s model at `point` (seeded) and its loop factory."""
    from pipeline.models.registry import build_model
    from pipeline.training.compile import TrainingForward

    device, precision = settings.torch_device, settings.precision
    if point.size == "mqar":
        from benchmarks.bench_mqar import bench_config
        from pipeline.training.answer_metrics import AnswerForward
        from pipeline.training.run_model import run_model

        cfg = bench_config(settings, point.keys["shape"], arch, Path("unused"), 1)
        torch.manual_seed(0)
        model = run_model(cfg)

        def answer_loop(m: torch.nn.Module, setting: str, backend: Any) -> PlainLoop:
            forward = TrainingForward(AnswerForward(m), setting, cfg.model, 10**9, backend)
            return AnswerLoop(m, cfg.optim, 10**6, device, precision, forward=forward)

        return Subject(dict(cfg.model), model, answer_loop)
    model_cfg = model_section(point.size, arch, point.keys.get("d_model"), point.keys.get("seq_len"))
    if model_cfg.get("arch") == "transformer" and "max_len" not in model_cfg:
        model_cfg["max_len"] = data["max_len"] + 1
    torch.manual_seed(0)
    model = build_model(**{**model_cfg, "vocab_size": point.vocab_size})

    def loop(m: torch.nn.Module, setting: str, backend: Any) -> PlainLoop:
        forward = TrainingForward(m, setting, model_cfg, 10**9, backend)
        return PlainLoop(m, OptimConfig(), 10**6, device, precision, forward=forward)

    return Subject(model_cfg, model, loop)


def fresh_loop(subj: Subject, setting: str, backend: Any) -> PlainLoop:
    """A loop on a deep copy of the subject's seeded model: every copy starts from the same weights."""
    return subj.make_loop(copy.deepcopy(subj.model), setting, backend)
