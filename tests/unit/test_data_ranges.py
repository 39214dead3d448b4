"""Streamed preparation split into ranges: workers, range splits and reruns give byte-identical shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.prepare import encode
from pipeline.data.prepare import plan as plan_mod
from pipeline.data.prepare.build import prepare
from pipeline.data.prepare.encode import bucket_of, encode_range
from pipeline.data.prepare.merge import merge_prepared
from pipeline.data.prepare.output import SCRATCH
from pipeline.data.prepare.staged import plan_request, plan_staged, staged_dir
from pipeline.data.sources.corpus import CorpusSource
from tests.unit.data_fixtures import write_parallel

pytestmark = pytest.mark.timeout(180)
ARGS = {"vocab_size": 300, "max_len": 64, "shard_size": 300, "seed": 3}
N = 3000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusSource:
    """3,000 line-aligned pairs with blank source lines (skipped pairs): input line != pair index."""
    root = tmp_path_factory.mktemp("ranges")
    src, tgt = write_parallel(root, n=N)
    lines = src.read_text().splitlines()
    for i in range(5, N, 97):
        lines[i] = ""
    src.write_text("\n".join(lines) + "\n")
    return CorpusSource(src=src, tgt=tgt, valid_frac=0.1, test_frac=0.1)


def tree(out: Path) -> dict[str, bytes]:
    """Every file of a prepared dir, by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(corpus: CorpusSource, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("ref") / "one"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plan_mod, "BUCKET_PAIRS", 500)  # ~5 train buckets
        manifest = prepare(corpus, out, **ARGS, workers=1)
    assert manifest["splits"]["train"]["shards"] and len(manifest["splits"]["train"]["shards"]) > 3
    return tree(out)


def test_two_workers_give_the_same_shards_and_manifest(
    corpus: CorpusSource, reference: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_mod, "BUCKET_PAIRS", 500)
    monkeypatch.setattr(plan_mod, "MIN_RANGE_PAIRS", 100)  # 3,000 pairs -> 2 ranges, one per worker
    plans: list[int] = []
    make_plan = plan_mod.make_plan

    def spy(*args: object, **kwargs: object) -> dict:
        plan = make_plan(*args, **kwargs)
        plans.append(plan["n_ranges"])
        return plan

    monkeypatch.setattr("pipeline.data.prepare.plan.make_plan", spy)
    prepare(corpus, tmp_path / "two", **ARGS, workers=2)
    assert plans == [2]
    assert tree(tmp_path / "two") == reference  # manifest.json, tokenizer.json and every shard, byte for byte


def test_any_range_split_in_any_order_with_a_rerun_gives_the_same_shards(
    corpus: CorpusSource, reference: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_mod, "BUCKET_PAIRS", 500)
    monkeypatch.setattr(encode, "CHUNK", 256)  # many encode chunks per range
    monkeypatch.setattr(encode, "SEGMENT_PAIRS", 300)  # several part files per bucket and range
    out = tmp_path / "staged"
    plan = plan_staged(corpus, out, n_ranges=5, **ARGS)
    assert plan["n_ranges"] == 5 and plan["pairs"] < N  # the blank lines were skipped
    scratch = staged_dir(out) / SCRATCH
    for index in (4, 1, 3, 0, 2, 1):  # out of order, range 1 twice (a rerun after a crash)
        encode_range(scratch, index)
    assert sorted(p.name for p in (scratch / "parts").iterdir()) == [f"range-{i:05d}" for i in range(5)]
    manifest = merge_prepared(staged_dir(out))
    assert tree(out) == reference
    assert manifest["dataset_hash"] == json.loads(reference["manifest.json"])["dataset_hash"]
    assert not staged_dir(out).exists()


def test_a_deferred_plan_gives_the_same_shards(
    corpus: CorpusSource, reference: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_mod, "BUCKET_PAIRS", 500)
    out = tmp_path / "deferred"
    request = plan_staged(corpus, out, n_ranges=2, **ARGS, defer=True)  # what `--slurm --plan-job` submits
    assert request["n_ranges"] == 2 and not (staged_dir(out) / SCRATCH / "plan.json").exists()  # checked only
    assert plan_request(out)["n_ranges"] == 2  # what the plan job runs
    for index in (0, 1):
        encode_range(staged_dir(out) / SCRATCH, index)
    merge_prepared(staged_dir(out))
    assert tree(out) == reference


def test_merge_with_a_missing_range_names_it_and_writes_nothing(corpus: CorpusSource, tmp_path: Path) -> None:
    out = tmp_path / "partial"
    plan_staged(corpus, out, n_ranges=3, **ARGS)
    scratch = staged_dir(out) / SCRATCH
    encode_range(scratch, 0)
    encode_range(scratch, 2)
    with pytest.raises(ValueError, match=r"range 1 of 3 has no parts .*--encode-range 1"):
        merge_prepared(staged_dir(out))
    assert not out.exists() and (scratch / "parts" / "range-00000").is_dir()  # nothing lost: rerun range 1
    encode_range(scratch, 1)
    assert merge_prepared(staged_dir(out))["splits"]["train"]["samples"] > 0


def test_bucket_of_pair_does_not_depend_on_the_split() -> None:
    n = 5 * encode.DRAW_BLOCK + 123
    whole = bucket_of(7, 0, n, 11)
    cuts = [0, 1, 999, encode.DRAW_BLOCK, 3 * encode.DRAW_BLOCK + 5, n]
    pieces = np.concatenate([bucket_of(7, a, b, 11) for a, b in zip(cuts, cuts[1:], strict=False)])
    assert np.array_equal(whole, pieces) and len(whole) == n
    assert not np.array_equal(whole, bucket_of(8, 0, n, 11))  # the seed matters
    counts = np.bincount(whole, minlength=11)
    assert counts.min() > 0.8 * n / 11  # every bucket gets its share


def test_merge_never_replaces_a_folder_made_since_the_plan(corpus: CorpusSource, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    plan_staged(corpus, out, n_ranges=1, **ARGS)
    encode_range(staged_dir(out) / SCRATCH, 0)
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # e.g. the user reused the name while the jobs were queued
    with pytest.raises(FileExistsError, match="not a prepared data dir"):
        merge_prepared(staged_dir(out))
    assert (out / "notes.txt").read_text() == "mine"


def test_ranges_of_a_tsv_directory_with_a_gzip_part_give_the_same_shards(
    corpus: CorpusSource, reference: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ranges start mid-file and inside the compressed file: the same pairs, keys and shards as the line files."""
    import gzip

    monkeypatch.setattr(plan_mod, "BUCKET_PAIRS", 500)
    assert corpus.src is not None and corpus.tgt is not None
    lines = [f"{s}\t{t}\n" for s, t in zip(corpus.src.read_text().splitlines(), corpus.tgt.read_text().splitlines(),
                                            strict=True)]  # fmt: skip
    (tmp_path / "tsv").mkdir()
    (tmp_path / "tsv" / "a.tsv").write_text("".join(lines[:1234]))
    (tmp_path / "tsv" / "b.tsv.gz").write_bytes(gzip.compress("".join(lines[1234:]).encode()))
    out = tmp_path / "from-tsv"
    plan_staged(CorpusSource(tsv=tmp_path / "tsv", valid_frac=0.1, test_frac=0.1), out, n_ranges=4, **ARGS)
    for index in range(4):
        encode_range(staged_dir(out) / SCRATCH, index)
    merge_prepared(staged_dir(out))
    shards = {k: v for k, v in tree(out).items() if k != "manifest.json"}  # its args name the TSV files
    assert shards == {k: v for k, v in reference.items() if k != "manifest.json"}
    assert len(shards) > 5


@pytest.mark.parametrize(
    ("overlong", "limit", "workers"), [("drop", None, 2), ("truncate", 37, 2), ("drop", 45, 3)]
)
def test_parallel_merge_writes_what_write_split_writes(
    tmp_path: Path, overlong: str, limit: int | None, workers: int
) -> None:
    """The merge renders samples in workers; shards and the split's entry equal `write_split` on the same records
    (overlong drops and truncations counted, `limit` stopping in the middle of a unit)."""
    import random

    from rich.progress import Progress

    from pipeline.data.prepare.merge_split import write_units
    from pipeline.data.prepare.range_parts import PartBuffer, load_part
    from pipeline.data.prepare.shard_writer import write_split

    rng = random.Random(0)
    paths = []
    for part in range(3):
        buf = PartBuffer()
        for i in range(40):
            n, m = rng.randint(1, 30), rng.randint(1, 30)  # max_len 20: some pairs are overlong
            buf.add(f"l{part * 40 + i:08d}", f"src é {i}", f"tgt {i}", list(range(n)), list(range(5, 5 + m)))
        paths.append(tmp_path / f"part-{part}.npy")
        buf.save(paths[-1])
    records = [r for p in paths[1:] for r in load_part(p)]
    random.Random("7-bucket-1").shuffle(records)
    chunks = [
        load_part(paths[0]),
        records[:50],
        records[50:],
    ]  # unit 0 unshuffled, unit 1 = parts 1+2 shuffled
    with Progress(transient=True) as progress:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        expected = write_split(chunks, 120, tmp_path / "a", "train", 20, 10, overlong, limit, progress)
        units = [([paths[0]], None), (paths[1:], "7-bucket-1")]
        got = write_units(
            units, 120, tmp_path / "b", "train", 20, 10, overlong, limit, progress, workers=workers
        )
    assert got == expected and got["dropped_overlong" if overlong == "drop" else "truncated"] > 0
    assert tree(tmp_path / "a") == tree(tmp_path / "b") and len(got["shards"]) >= 4
