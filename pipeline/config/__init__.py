"""The run configuration: its schema, the one YAML reader, the checks, and the keys that tie a checkpoint to its run.

Modules, bottom up (each imports only those above it in this list):
  errors.py         ConfigError, ConfigWarning
  yaml_files.py     the one YAML/JSON mapping reader (duplicate keys refused), shipped config paths
  keys.py           a key's type, description and range as field metadata; typing, range checks, help text
  memory.py         the memory tasks' sections (data.mqar, data.copy, data.memory), their checks and vocabulary
  schema.py         the RunConfig dataclasses
  model_section.py  the free `model` section against the model registry; its validated config (`model_spec`)
  checks.py         checks across keys and against this machine, contradictions as warnings
  loading.py        files + overrides -> a RunConfig validated once; to/from dict and YAML
  identity.py       the keys (and hash) a resumed run must keep

May import: `pipeline.models` (the registry, lazily: torch) and `pipeline.data.memory_spec` (a memory task's
spec, lazily: numpy), nothing else of the pipeline. Importers use this
package (`from pipeline.config import load_config`); the names below are its interface.
"""

from __future__ import annotations

from pipeline.config.checks import check_decode_positions, check_machine, contradictions, sequence_len
from pipeline.config.errors import ConfigError, ConfigWarning
from pipeline.config.identity import IDENTITY_KEYS, config_hash, identity_mismatch, identity_of
from pipeline.config.keys import Bounds, KeySpec, coerce, key, reject_unknown
from pipeline.config.loading import (
    config_from_dict,
    config_keys,
    describe_keys,
    format_config,
    load_config,
    parse_override,
    save_config,
    to_dict,
    validate,
)
from pipeline.config.memory import MEMORY_TASKS, memory_seq_len, memory_spec_of, model_vocab_size
from pipeline.config.model_section import model_spec, model_task
from pipeline.config.schema import (
    PRECISIONS,
    TASKS,
    DataConfig,
    LoggingConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from pipeline.config.yaml_files import REPO, DuplicateKeyError, load_mapping, load_yaml, shipped_path

__all__ = [
    "IDENTITY_KEYS",
    "MEMORY_TASKS",
    "PRECISIONS",
    "REPO",
    "TASKS",
    "Bounds",
    "ConfigError",
    "ConfigWarning",
    "DataConfig",
    "DuplicateKeyError",
    "KeySpec",
    "LoggingConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "check_decode_positions",
    "check_machine",
    "coerce",
    "config_from_dict",
    "config_hash",
    "config_keys",
    "contradictions",
    "describe_keys",
    "format_config",
    "identity_mismatch",
    "identity_of",
    "key",
    "load_config",
    "load_mapping",
    "load_yaml",
    "memory_seq_len",
    "memory_spec_of",
    "model_spec",
    "model_task",
    "model_vocab_size",
    "parse_override",
    "reject_unknown",
    "save_config",
    "sequence_len",
    "shipped_path",
    "to_dict",
    "validate",
]
