"""What is inside a checkpoint: whether it can be loaded at all, the step it holds, the run config it carries.

The metadata sidecar (`checkpoint_files.py`) vouches only that a file is the one that was written. A file truncated
and given a matching sidecar, a file with no sidecar, a directory that is not a DeepSpeed checkpoint, or a sidecar
edited to claim another step is caught here, before Lightning or DeepSpeed fail on it with a traceback. torch is
imported inside the functions: `checkpoint_files` (and what imports it) stays light.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def content_step(ckpt: Path) -> tuple[int | None, str]:
    """(the step saved inside `ckpt`, "") or (None, why it is not a checkpoint this pipeline can load); (None, "")
    when the step cannot be read but the form is right (a universal checkpoint).

    Tensors are memory-mapped, not read."""
    import torch

    if ckpt.is_dir():
        if not (ckpt / "latest").is_file() and not (ckpt / "latest_universal").is_file():
            return None, "a directory but not a DeepSpeed checkpoint (no 'latest' file in it)"
        files = sorted(ckpt.rglob("*mp_rank_00_model_states.pt"))
        if not files and (ckpt / "latest_universal").is_file():  # `pipeline export --universal`: DeepSpeed's
            return None, ""  # own layout, no model-states file to read the step from
        if not files:
            return None, "a DeepSpeed checkpoint without its model-states file (mp_rank_00_model_states.pt)"
        file = files[0]
    else:
        file = ckpt
    if not zipfile.is_zipfile(file):  # torch.save's format; a truncated one has lost its central directory
        return (
            None,
            "not a readable checkpoint (not a torch.save zip archive: truncated, or another kind of file)",
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:  # noqa: BLE001 - whatever torch raises, the file is not a readable checkpoint
        return None, f"not a readable checkpoint ({_first_line(err)})"
    step = state.get("global_step") if isinstance(state, dict) else None
    if not isinstance(step, int) or (ckpt.is_file() and "state_dict" not in state):
        return None, "not a checkpoint of this pipeline (no state_dict / global_step in it)"
    return step, ""


def verify_content(ckpt: Path, meta: dict[str, Any] | None) -> str:
    """Why a checkpoint that passed `verify` (or has no sidecar: `meta` None) cannot be resumed; "" if it can."""
    step, reason = content_step(ckpt)
    if step is None:
        return reason  # "" for a universal checkpoint: nothing to compare
    claimed = meta.get("step") if meta is not None else None
    if claimed is not None and claimed != step:
        return (
            f"its metadata says step {claimed} but the checkpoint holds step {step} (the sidecar was changed)"
        )
    return ""


def saved_config(ckpt: Path) -> dict[str, Any] | None:
    """The run config saved inside a checkpoint (Lightning's `hyper_parameters`), or None if unreadable."""
    import torch

    files = [ckpt] if ckpt.is_file() else sorted(ckpt.rglob("mp_rank_00_model_states.pt"))
    for file in files:
        try:
            state = torch.load(file, map_location="cpu", weights_only=False, mmap=True)
        except Exception:  # noqa: BLE001 - any unreadable file just means "keys unknown" in the message
            continue
        config = (state.get("hyper_parameters") or {}).get("config") if isinstance(state, dict) else None
        if isinstance(config, dict):
            return config
    return None
