"""Read an offline W&B run back from its `.wandb` file: run id, name, group, config, history steps, summary.

For tests and for checking a run before `wandb sync`. The file is W&B's record log: a 7-byte header (`:W&B`,
magic 0xBEE1, version 0), then LevelDB-log blocks of 32 KiB whose chunks (4-byte checksum, 2-byte length, 1-byte
type: full / first / middle / last) carry serialized protobuf `Record`s. wandb >= 0.2x writes it from its Go core
and no longer ships the Python reader (`wandb.sdk.internal.datastore`), so the chunk framing is read here by hand
(checksums are not verified); the records are decoded with wandb's own protobuf classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class OfflineRun:
    path: Path
    run_ids: list[str] = field(
        default_factory=list
    )  # one per run record (a resumed run writes one per start)
    names: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # merged config updates, values decoded from JSON
    config_updates: int = 0  # how many config records carried the run config (`config` key)
    steps: list[int] = field(default_factory=list)  # `trainer/global_step` of every history row that has it
    summary: dict[str, Any] = field(default_factory=dict)
    exit_records: int = 0  # a finished run has one per start


def offline_run_files(run_dir: Path) -> list[Path]:
    """Every `.wandb` file under `<run_dir>/wandb/` (one per start of the run), oldest first."""
    return sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


HEADER = b":W&B\xe1\xbe\x00"
BLOCK = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def record_payloads(path: Path) -> list[bytes]:
    """The serialized records of a `.wandb` file, in order (a truncated last record is dropped)."""
    raw = path.read_bytes()
    if not raw.startswith(HEADER):
        raise ValueError(f"{path}: not a W&B run file (header {raw[:7]!r})")
    out: list[bytes] = []
    pending = b""
    pos = len(HEADER)
    while pos + CHUNK_HEADER <= len(raw):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # the rest of a block too short for a chunk header is padding
            pos += left
            continue
        length = int.from_bytes(raw[pos + 4 : pos + 6], "little")
        kind = raw[pos + 6]
        data = raw[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == 0 and length == 0:  # zero fill at the end of a block
            continue
        if len(data) < length:
            break
        if kind == FULL:
            out.append(data)
        elif kind == FIRST:
            pending = data
        elif kind == MIDDLE:
            pending += data
        elif kind == LAST:
            out.append(pending + data)
            pending = b""
    return out


def read_offline_run(path: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2

    run = OfflineRun(path=path)
    for data in record_payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_ids.append(record.run.run_id)
            run.names.append(record.run.display_name)
            run.groups.append(record.run.run_group)
            _merge_config(run, record.run.config.update)
        elif kind == "config":
            _merge_config(run, record.config.update)
        elif kind == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                if key == "trainer/global_step":
                    run.steps.append(int(float(item.value_json)))
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "exit":
            run.exit_records += 1
    return run


def _merge_config(run: OfflineRun, items: Any) -> None:
    for item in items:
        key = item.key or "/".join(item.nested_key)
        value = json.loads(item.value_json)
        if isinstance(value, dict) and "value" in value:
            value = value["value"]
        if key == "config":
            run.config_updates += 1
        run.config[key] = value
