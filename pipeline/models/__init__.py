"""Seq2seq models by name: `build_model("lstm" | "residual_lstm" | "transformer" | ablations, **config)`."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from pipeline.models.base import Seq2SeqConfig, Seq2SeqModel
from pipeline.models.beam import beam_decode
from pipeline.models.decode import greedy_decode
from pipeline.models.decode_state import DecodeState
from pipeline.models.lstm import LSTMConfig, LSTMSeq2Seq
from pipeline.models.lstm_noresid import LSTMNoCellResidualConfig, LSTMNoCellResidualSeq2Seq
from pipeline.models.minlstm import MinLSTMConfig, MinLSTMSeq2Seq
from pipeline.models.residual_lstm import ResidualLSTMConfig, ResidualLSTMSeq2Seq
from pipeline.models.transformer import TransformerConfig, TransformerSeq2Seq

MODEL_REGISTRY: dict[str, tuple[type[Seq2SeqConfig], type[Seq2SeqModel]]] = {
    "lstm": (LSTMConfig, LSTMSeq2Seq),
    "residual_lstm": (ResidualLSTMConfig, ResidualLSTMSeq2Seq),
    "transformer": (TransformerConfig, TransformerSeq2Seq),
    # ablations (docs/ablations.md): the cell state's residual through time removed; a parallel-scan recurrence
    "lstm_no_cell_residual": (LSTMNoCellResidualConfig, LSTMNoCellResidualSeq2Seq),
    "minlstm": (MinLSTMConfig, MinLSTMSeq2Seq),
}


def model_config(arch: str, **kwargs: Any) -> Seq2SeqConfig:
    """Build and validate the config of `arch`; every mistake is a ValueError naming the key."""
    if arch not in MODEL_REGISTRY:
        raise ValueError(f"unknown model arch {arch!r}; known: {sorted(MODEL_REGISTRY)}")
    config_cls = MODEL_REGISTRY[arch][0]
    if kwargs.get("task") == "lm":  # source-side keys default off; set explicitly on, validate names them
        kwargs = {**getattr(config_cls, "lm_defaults", {}), **kwargs}
    valid = {f.name: f for f in fields(config_cls)}
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for model arch {arch!r}; valid keys: {sorted(valid)}")
    missing = sorted(
        n
        for n, f in valid.items()
        if n not in kwargs and f.default is MISSING and f.default_factory is MISSING
    )
    if missing:
        raise ValueError(f"missing required key(s) {missing} for model arch {arch!r}")
    return config_cls(**kwargs)


def build_model(arch: str, **kwargs: Any) -> Seq2SeqModel:
    config = model_config(arch, **kwargs)
    return MODEL_REGISTRY[arch][1](config)


__all__ = [
    "MODEL_REGISTRY",
    "DecodeState",
    "LSTMConfig",
    "LSTMNoCellResidualConfig",
    "MinLSTMConfig",
    "ResidualLSTMConfig",
    "Seq2SeqConfig",
    "Seq2SeqModel",
    "TransformerConfig",
    "beam_decode",
    "build_model",
    "greedy_decode",
    "model_config",
]
