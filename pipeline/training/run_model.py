"""The model a run config describes: `cfg.model` plus the data's vocabulary size and the pad id.

The model's `task` follows `data.task` (lm: decoder only). One place, because the LightningModule, the exporter
and the sweep's parameter count must build the same model.
"""

from __future__ import annotations

from pipeline.config import RunConfig, model_task
from pipeline.config_memory import model_vocab_size
from pipeline.data.tokenizer import PAD_ID
from pipeline.models import Seq2SeqModel, build_model


def run_model(cfg: RunConfig) -> Seq2SeqModel:
    return build_model(
        **{
            **cfg.model,
            "vocab_size": model_vocab_size(cfg.data),
            "pad_id": PAD_ID,
            "task": model_task(cfg.data),
        }
    )
