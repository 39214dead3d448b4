"""The models. `configs` (keys and validation, no torch), `registry` (`build_model`, `MODEL_REGISTRY`), one file
per architecture, and the decoding helpers (`decode`, `beam`). This package file imports nothing, so checking a
config (`pipeline.models.configs`) does not import torch."""
