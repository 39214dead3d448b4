"""The architectures by `model.arch` name: each one's config class and module, and `build_model`.

Imports every model (torch); a caller that only checks a config imports `pipeline.models.configs` instead.
"""

from __future__ import annotations

from typing import Any

from pipeline.models.base import Seq2SeqModel
from pipeline.models.configs import CONFIGS, Seq2SeqConfig, model_config
from pipeline.models.lstm import LSTMSeq2Seq
from pipeline.models.lstm_noresid import LSTMNoCellResidualSeq2Seq
from pipeline.models.minlstm import MinLSTMSeq2Seq
from pipeline.models.residual_lstm import ResidualLSTMSeq2Seq
from pipeline.models.transformer import TransformerSeq2Seq

MODULES: dict[str, type[Seq2SeqModel]] = {
    "lstm": LSTMSeq2Seq,
    "residual_lstm": ResidualLSTMSeq2Seq,
    "transformer": TransformerSeq2Seq,
    "lstm_no_cell_residual": LSTMNoCellResidualSeq2Seq,
    "minlstm": MinLSTMSeq2Seq,
}
MODEL_REGISTRY: dict[str, tuple[type[Seq2SeqConfig], type[Seq2SeqModel]]] = {
    arch: (CONFIGS[arch], module) for arch, module in MODULES.items()
}


def build_model(arch: str, **kwargs: Any) -> Seq2SeqModel:
    config = model_config(arch, **kwargs)
    return MODEL_REGISTRY[arch][1](config)
