"""`pipeline export RUN_DIR`: one fp32 state dict that a plain model loads, from any checkpoint of a run.

The work is in `pipeline/training/exported_weights.py` (ZeRO consolidation, universal conversion); this is the
command line. `--universal` converts a ZeRO checkpoint into DeepSpeed's universal format (optimizer state
included), which a run on a different number of ranks can resume from (see docs/deepspeed.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pipeline.training.evaluate import nonempty
from pipeline.training.exported_weights import (
    EXPORT_NAME,
    consolidate,
    is_universal,
    load_exported,
    model_from_export,
    to_universal,
)

__all__ = [
    "add_export_arguments",
    "consolidate",
    "is_universal",
    "load_exported",
    "model_from_export",
    "run_export",
]


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=nonempty, help="run directory (holds checkpoints/)")
    parser.add_argument(
        "--checkpoint", default=None, help="checkpoint file or ZeRO directory (default: the newest)"
    )
    parser.add_argument("--out", default=None, help=f"output file (default: RUN_DIR/{EXPORT_NAME})")
    parser.add_argument(
        "--universal", action="store_true",
        help="instead convert the ZeRO checkpoint to DeepSpeed's universal format (to resume on another rank count)",
    )  # fmt: skip


def _out_problem(out: Path) -> str:
    """Why `--out` cannot be written ("" if it can): checked before a ZeRO consolidation that may take minutes."""
    if out.is_dir():
        return f"--out {out} is a directory; give a file name"
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            return f"--out {out}: {parent} is a file, not a directory"
    return ""


def run_export(args: argparse.Namespace) -> int:
    from pipeline.training.user_errors import report_user_error

    try:
        return _export(args)
    except Exception as err:  # a user's bad file or checkpoint is one line (user_errors.py); a bug re-raises
        status = report_user_error(err, prog="pipeline export: ")
        if status is None:
            raise
        return status


def _export(args: argparse.Namespace) -> int:
    from pipeline.training.checkpoint_files import checkpoint_to_read

    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / EXPORT_NAME
    problem = "" if args.universal else _out_problem(out)
    if problem:
        print(f"pipeline export: error: {problem}", file=sys.stderr)
        return 2
    ckpt = checkpoint_to_read(run_dir, args.checkpoint, command="pipeline export")
    if ckpt is None:
        return 2
    try:
        if args.universal:
            if not ckpt.is_dir():
                raise ValueError(
                    f"{ckpt} is not a ZeRO checkpoint directory; only those have a universal form"
                )
            print(f"universal checkpoint: {to_universal(ckpt)}")
            return 0
        blob = consolidate(ckpt)
    except ValueError as err:
        print(f"pipeline export: error: {err}", file=sys.stderr)
        return 2
    blob["source"] = str(ckpt)
    # Through the model once: tied weights (embeddings = output projection) come out of a ZeRO consolidation as
    # separate copies; the model's own state dict shares them again, so the file and the count hold them once.
    model, _ = model_from_export(blob, source=str(ckpt))
    blob["model"] = model.state_dict()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, out)
    print(
        f"exported {len(blob['model'])} tensors ({model.num_params():,} distinct fp32 parameters, step "
        f"{blob['step']}) from {ckpt} to {out}"
    )
    return 0
