"""Phase 3 of the streamed preparation: every range's part files -> shards + manifest, renamed onto the out dir.

Valid / test parts are read in range order; each train bucket's parts are concatenated in range order (= pair
order), shuffled with the bucket's seed and written out, bucket after bucket (``merge_split.write_units``: one
process writes the shards, workers render the samples). Random scatter (``encode.py``) followed by an in-bucket
shuffle is a uniformly random permutation of the whole train split (the classic external shuffle), so train shards
mix the whole corpus while memory is bounded by one bucket. (The loader adds its own per-epoch shard-order and
buffer shuffle.) A missing range is an error naming it.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

from pipeline.data.prepare.encode import TEST, TRAIN, VALID, range_dir
from pipeline.data.prepare.output import check_replaceable, write_prepared
from pipeline.data.prepare.plan import SCRATCH, read_plan
from pipeline.data.text import SPLITS
from pipeline.data.tokenizer import load_tokenizer


def merge_prepared(work: str | Path, workers: int = 1) -> dict:
    """Every range's parts -> shards + manifest, renamed onto the planned out dir; returns the manifest.

    ``workers``: processes rendering the samples (the shards do not depend on it). A rerun after a failed merge
    starts over (the parts are kept until the manifest is written).
    """
    work = Path(work)
    plan = read_plan(work / SCRATCH)
    part_files(work / SCRATCH, plan)  # a missing range is an error before anything is written
    settings = plan["settings"]
    check_replaceable(
        Path(settings["out_dir"]), settings.get("force", False)
    )  # it may have changed since the plan
    for split in SPLITS:
        shutil.rmtree(work / split, ignore_errors=True)
    tokenizer = load_tokenizer(work / SCRATCH / "tokenizer.json")
    sizes = {split: b - a for split, (a, b) in zip(SPLITS, plan["bounds"], strict=True)}
    units = merge_units(work / SCRATCH, plan)
    return write_prepared(
        work, tokenizer, units, sizes, dict(plan["extra"]), settings, workers=max(1, workers)
    )


def part_files(scratch: Path, plan: dict) -> dict[str, list[Path]]:
    """Part files by name (``valid``, ``test``, ``train-BBBBB``), in range then segment order.

    Raises ValueError naming the first range whose parts are missing (its task has not finished).
    """
    out: dict[str, list[Path]] = defaultdict(list)
    for index in range(plan["n_ranges"]):
        folder = range_dir(scratch, index)
        if not folder.is_dir():
            out_dir = plan["settings"].get("out_dir", "OUT")
            raise ValueError(f"range {index} of {plan['n_ranges']} has no parts in {folder} (its encode task did "
                             f"not finish): rerun it with `pipeline data prepare --out {out_dir} --encode-range "
                             f"{index}`, then the merge")  # fmt: skip
        for path in sorted(folder.glob("*.npy")):
            out[path.stem.rsplit("-", 1)[0]].append(path)
    return out


def merge_units(scratch: Path, plan: dict) -> list[tuple[str, list]]:
    """The merge's input, split by split: valid and test part files in range order; the train buckets in order, each
    with the seed its records are shuffled with (``merge_split.py`` renders and writes them)."""
    parts = part_files(scratch, plan)
    held_out = [(split, [([path], None) for path in parts.get(split, [])]) for split in (VALID, TEST)]
    train = [
        (parts.get(f"{TRAIN}-{b:05d}", []), f"{plan['seed']}-bucket-{b}") for b in range(plan["n_buckets"])
    ]
    return [*held_out, (TRAIN, train)]
