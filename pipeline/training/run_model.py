"""The model a run config describes: the architecture's config validated with the run (`model_spec`: `cfg.model`
plus the data's vocabulary size and task), built as is.

One place, because the LightningModule, the exporter and the sweep's parameter count must build the same model.
"""

from __future__ import annotations

import dataclasses

from pipeline.config import RunConfig, model_spec
from pipeline.data.tokenizer import PAD_ID
from pipeline.models.base import Seq2SeqModel
from pipeline.models.registry import MODEL_REGISTRY


def run_model(cfg: RunConfig) -> Seq2SeqModel:
    spec = model_spec(cfg)  # validated by load_config; not parsed again
    if spec.pad_id != PAD_ID:  # the config layer leaves pad_id at its default, which is the data's <pad> id
        spec = dataclasses.replace(spec, pad_id=PAD_ID)
    return MODEL_REGISTRY[cfg.model["arch"]][1](spec)
