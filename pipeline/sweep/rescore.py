"""``pipeline scaling rescore SWEEP_DIR``: add the yardsticks to records written before they existed.

For every ``<run>/result.json`` of the sweep: ``unigram_xent`` (and, for LM runs, the Kneser-Ney ``count_floors``)
from the run's prepared data as it is now (``data.dir`` of the record's config, read relative to the working
directory; data of an older format is refused with how to rebuild it), and with ``--contexts`` the truncation
curve from the run's newest checkpoint (runs without one are listed and left without it). The record is rewritten
with only those fields changed. LM data rebuilt in format 3 (BOS, disjoint windows) holds the same validation text
cut into windows one token longer, so an old LM record's yardsticks are over the same text up to the last window.
An old Transformer LM record's ``model.max_len = data.context`` is read as context + 1 (no model is built from
the record; ``--contexts`` scores the checkpoint's own model, which, trained before BOS, meets BOS unseen).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from pipeline.config import config_from_dict
from pipeline.scaling.records.run_dir import RESULT_FILE
from pipeline.scaling.records.run_record import load_record, save_record
from pipeline.training.yardsticks import run_yardsticks


def rescore_run(run_dir: Path, contexts: str | None = None, stride: int = 1, windows: int = 0) -> dict:
    """Recompute one run's yardsticks and rewrite its result.json; returns the new fields."""
    from pipeline.training.run_result import RECORD_ONLY_CONFIG_KEYS, valid_target_counts

    path = run_dir / RESULT_FILE
    record = load_record(path)
    values = {k: v for k, v in record.config.items() if k not in RECORD_ONLY_CONFIG_KEYS}
    data, model = values.get("data", {}), values.get("model", {})
    if data.get("task") == "lm" and model.get("max_len") == data.get("context"):  # a record from before BOS:
        values["model"] = {**model, "max_len": data["context"] + 1}  # no model is built from it here
    if contexts is not None:
        values = {
            **values,
            "train": {
                **values.get("train", {}),
                "eval_contexts": contexts,
                "eval_stride": stride,
                "eval_windows": windows,
            },
        }
    cfg = config_from_dict(values, source=str(path))
    _, id_counts = valid_target_counts(cfg)
    fields = run_yardsticks(cfg, run_dir, record.tokens, id_counts, truncation=contexts is not None)
    save_record(path, dataclasses.replace(record, **fields))
    return fields


def add_rescore_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="directory holding <run>/result.json records")
    parser.add_argument("--contexts", default=None,
                        help="LM runs: also score the newest checkpoint at these contexts (e.g. 8,16,32)")  # fmt: skip
    parser.add_argument("--stride", type=int, default=1,
                        help="with --contexts: score every STRIDE-th validation token (default 1: all)")  # fmt: skip
    parser.add_argument("--windows", type=int, default=0,
                        help="with --contexts: score this many validation windows, spread over the split (0: all)")  # fmt: skip


def run_rescore_command(args: argparse.Namespace) -> int:
    runs = sorted(p.parent for p in Path(args.sweep_dir).glob(f"*/{RESULT_FILE}"))
    if not runs:
        print(f"pipeline scaling rescore: no <run>/{RESULT_FILE} in {args.sweep_dir}", file=sys.stderr)
        return 2
    from pipeline.training.user_errors import report_user_error

    for run_dir in runs:
        try:
            fields = rescore_run(run_dir, args.contexts, args.stride, args.windows)
        except Exception as err:  # an old-format data dir, a bad --contexts: one line (user_errors.py)
            status = report_user_error(err, prog=f"pipeline scaling rescore: {run_dir.name}: ")
            if status is None:
                raise
            return status
        floors = fields.get("count_floors", {})
        text = ", ".join(
            [f"unigram_xent {fields['unigram_xent']:.4f}"] * ("unigram_xent" in fields)
            + [f"{n} {floors[n]['loss']:.4f}" for n in ("bigram", "trigram") if n in floors]
            + ["truncation"] * ("truncation" in fields)
        )
        print(f"{run_dir.name}: {text or 'nothing applies'}")
    return 0
