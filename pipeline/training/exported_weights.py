"""Weights out of any checkpoint of a run: ZeRO shards -> one fp32 state dict, and ZeRO -> DeepSpeed universal.

A ZeRO checkpoint is a directory (`checkpoints/last.ckpt/`) holding one shard of the optimizer state per rank and,
under ZeRO-3, of the weights too. DeepSpeed's `zero_to_fp32` reassembles the fp32 master weights from the shards
(no process group needed); a DDP/single-device checkpoint is a Lightning file whose `state_dict` we only rename.

The exported blob is one dict, `{"model": state_dict, "config": run config, "step": int, "source": path}`:
`load_exported(path)` gives back `(model, RunConfig)` with no Lightning or DeepSpeed involved. `pipeline export`
(pipeline/export.py) is the command line over these functions; evaluation and the DeepSpeed resume check use them
too, which is why they live in the training package.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

from pipeline.config import RunConfig, config_from_dict
from pipeline.training.checkpoint_files import ResumeError

EXPORT_NAME = "model_fp32.pt"
UNIVERSAL_SUFFIX = "-universal.ckpt"


def _tag_dir(ckpt: Path) -> Path:
    """The directory DeepSpeed saved into (`<ckpt>/<tag>`, tag read from `<ckpt>/latest`)."""
    latest = ckpt / "latest"
    if not latest.is_file():
        raise ResumeError(f"{ckpt} is a directory but not a DeepSpeed checkpoint (no 'latest' file in it)")
    return ckpt / latest.read_text().strip()


def zero_world_size(ckpt: Path) -> int:
    """Number of data-parallel ranks that wrote a ZeRO checkpoint directory (one optimizer shard each)."""
    return int(_client_state(ckpt)["dp_world_size"])


def _client_state(ckpt: Path) -> dict[str, Any]:
    """Lightning's part of a ZeRO checkpoint (config, step, loops), stored in rank 0's model-states file."""
    tag = _tag_dir(ckpt)
    for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt"):
        if (tag / name).is_file():
            return torch.load(tag / name, map_location="cpu", weights_only=False, mmap=True)
    raise ResumeError(
        f"{tag}: no model-states file (mp_rank_00_model_states.pt); is the checkpoint complete?"
    )


def consolidate(ckpt: Path) -> dict[str, Any]:
    """`{"model", "config", "step", "source"}` from a ZeRO directory or a Lightning checkpoint file."""
    if ckpt.is_dir():
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        client = _client_state(ckpt)
        state = get_fp32_state_dict_from_zero_checkpoint(str(ckpt))
    else:
        client = torch.load(ckpt, map_location="cpu", weights_only=False)
        state = client["state_dict"]
    if "config" not in client.get("hyper_parameters", {}):
        raise ResumeError(
            f"{ckpt}: no run config in the checkpoint (hyper_parameters.config); not a pipeline run?"
        )
    # The LightningModule holds the network as `self.model`: its keys are the plain model's, prefixed "model."
    model = {k.removeprefix("model."): v.float() for k, v in state.items() if k.startswith("model.")}
    return {"model": model, "config": client["hyper_parameters"]["config"], "step": client.get("global_step")}


def model_from_export(
    blob: dict[str, Any], source: str = "exported weights"
) -> tuple[torch.nn.Module, RunConfig]:
    """A plain `pipeline.models` model holding `blob["model"]`, and the run config it was trained with."""
    from pipeline.training.run_model import run_model

    cfg = config_from_dict(blob["config"], source=source)
    model = run_model(cfg)
    model.load_state_dict(blob["model"])
    return model, cfg


def load_exported(path: str | Path, map_location: str = "cpu") -> tuple[torch.nn.Module, RunConfig]:
    """The model and run config of a file written by `pipeline export`."""
    return model_from_export(
        torch.load(path, map_location=map_location, weights_only=False), source=str(path)
    )


def universal_path(ckpt: Path) -> Path:
    return ckpt.with_name(f"{ckpt.name.removesuffix('.ckpt')}{UNIVERSAL_SUFFIX}")


def is_universal(ckpt: Path) -> bool:
    return (ckpt / "latest_universal").is_file()


def to_universal(ckpt: Path) -> Path:
    """Convert a ZeRO checkpoint directory to DeepSpeed's universal format, as a new checkpoint beside it.

    `checkpoints/step=N.ckpt` -> `checkpoints/step=N-universal.ckpt/{checkpoint/, latest_universal}` plus a copy of
    the original's metadata sidecar, so `--resume auto` picks it as the newest checkpoint of step N. DeepSpeed
    loads it when its config has `"checkpoint": {"load_universal": true}`; there is deliberately no `latest` file,
    so it is never mistaken for an ordinary ZeRO checkpoint. `inject_missing_state` adds the (trivial: no tensor
    or pipeline parallelism here) slicing metadata that Megatron-style clients save and Lightning does not.
    """
    from deepspeed.checkpoint import ds_to_universal

    from pipeline.training.checkpoint_files import meta_path, write_metadata

    tag = _tag_dir(ckpt)
    out = universal_path(ckpt)
    workers = max(1, min(4, os.cpu_count() or 1))
    args = argparse.Namespace(
        input_folder=str(tag), output_folder=str(out / "checkpoint"), num_extract_workers=workers,
        num_merge_workers=workers, keep_temp_folder=False, strict=True, inject_missing_state=True,
    )  # fmt: skip
    ds_to_universal.main(args)
    (out / "latest_universal").write_text("checkpoint")
    if meta_path(ckpt).is_file():
        meta = json.loads(meta_path(ckpt).read_text())
        write_metadata(out, meta["step"], meta["tokens"], meta["config_hash"], meta["world_size"])
    return out
