"""Streaming preparation: every input format gives the same shards, bounded shuffle, malformed lines."""

from __future__ import annotations

import argparse
import gzip
import lzma
from pathlib import Path

import pytest

from pipeline.data.manifest import read_manifest
from pipeline.data.prepare import plan as plan_mod
from pipeline.data.prepare.build import prepare
from pipeline.data.prepare.command import add_prepare_arguments, run_prepare
from pipeline.data.sources.corpus import CorpusSource
from pipeline.data.stream.loader import build_loader
from tests.unit.data_fixtures import write_parallel

pytestmark = pytest.mark.timeout(120)
ARGS = {"vocab_size": 300, "max_len": 48, "shard_size": 8, "seed": 1}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The 200-pair synthetic corpus as line-aligned files, TSV, gzip, xz and directories of parts."""
    root = tmp_path_factory.mktemp("formats")
    src, tgt = write_parallel(root)
    src_lines, tgt_lines = src.read_text().splitlines(), tgt.read_text().splitlines()
    tsv = "".join(f"{s}\t{t}\n" for s, t in zip(src_lines, tgt_lines, strict=True))
    (root / "pairs.tsv").write_text(tsv)
    (root / "pairs.tsv.xz").write_bytes(lzma.compress(tsv.encode()))
    (root / "src.en.gz").write_bytes(gzip.compress(src.read_bytes()))
    (root / "tgt.fr.gz").write_bytes(gzip.compress(tgt.read_bytes()))
    for side, lines in (("srcdir", src_lines), ("tgtdir", tgt_lines)):
        (root / side).mkdir()
        for part, start in enumerate(range(0, 200, 70)):
            (root / side / f"part-{part}.txt").write_text("\n".join(lines[start : start + 70]) + "\n")
    (root / "tsvdir").mkdir()
    lines = tsv.splitlines(keepends=True)
    (root / "tsvdir" / "a.tsv").write_text("".join(lines[:120]))
    (root / "tsvdir" / "b.tsv.gz").write_bytes(gzip.compress("".join(lines[120:]).encode()))
    return {"src": src, "tgt": tgt, "root": root}


@pytest.mark.parametrize("kind", ["tsv", "tsv_xz", "gzip_files", "directories", "tsv_directory"])
def test_every_format_gives_the_same_shards(files: dict[str, Path], tmp_path: Path, kind: str) -> None:
    root = files["root"]
    reference = prepare(CorpusSource(src=files["src"], tgt=files["tgt"], valid_frac=0.1, test_frac=0.1),
                        tmp_path / "ref", **ARGS)  # fmt: skip
    source = {
        "tsv": CorpusSource(tsv=root / "pairs.tsv", valid_frac=0.1, test_frac=0.1),
        "tsv_xz": CorpusSource(tsv=root / "pairs.tsv.xz", valid_frac=0.1, test_frac=0.1),
        "gzip_files": CorpusSource(src=root / "src.en.gz", tgt=root / "tgt.fr.gz", valid_frac=0.1, test_frac=0.1),
        "directories": CorpusSource(src=root / "srcdir", tgt=root / "tgtdir", valid_frac=0.1, test_frac=0.1),
        "tsv_directory": CorpusSource(tsv=root / "tsvdir", valid_frac=0.1, test_frac=0.1),
    }[kind]  # fmt: skip
    manifest = prepare(source, tmp_path / kind, **ARGS)
    assert manifest["dataset_hash"] == reference["dataset_hash"]  # tokenizer and every shard byte-identical
    assert manifest["malformed"] == {"count": 0, "first": []}


def test_bounded_shuffle_keeps_splits_and_sees_each_pair_once(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_mod, "BUCKET_PAIRS", 16)  # 160 train pairs -> 10 buckets on disk
    monkeypatch.setattr(plan_mod, "TOKENIZER_SAMPLE", 50)
    source = CorpusSource(src=files["src"], tgt=files["tgt"], valid_frac=0.1, test_frac=0.1)
    manifest = prepare(source, tmp_path / "d", **{**ARGS, "max_len": 10_000})
    # a 50-pair reservoir over all 200 pairs, of which only the train ones (about 40) train the BPE
    assert 0 < manifest["tokenizer_sample_pairs"] < 50

    def shard_keys(split: str) -> list[str]:  # in shard order, as written
        ds = build_loader(tmp_path / "d", split, batch_tokens=20_000).dataset
        return [s.key for shard in ds.shards for s in ds._read_shard(shard)]

    train = shard_keys("train")
    assert sorted(train) == [f"l{i:08d}" for i in range(160)] and train != sorted(train)
    assert shard_keys("valid") == [f"l{i:08d}" for i in range(160, 180)]  # held-out blocks stay in order
    assert shard_keys("test") == [f"l{i:08d}" for i in range(180, 200)]
    first_bucket = train[:16]
    assert (
        max(int(k[1:]) for k in first_bucket) - min(int(k[1:]) for k in first_bucket) > 32
    )  # mixed, not a run
    assert not list((tmp_path / "d").glob(".scratch*")) and not list(tmp_path.glob(".d.tmp*"))


def test_malformed_lines_are_counted_with_file_and_line(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    lines = (files["root"] / "pairs.tsv").read_bytes().splitlines(keepends=True)
    lines[4] = b"no tab on this line\n"
    lines[9] = b"three\tfields\there\n"
    lines[11] = b"bad \xff\xfe bytes\tmauvais\n"
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"".join(lines))
    parser = argparse.ArgumentParser()
    add_prepare_arguments(parser)
    args = parser.parse_args(["--tsv", str(bad), "--out", str(tmp_path / "o"), "--vocab-size", "300"])
    assert run_prepare(args) == 0
    err = capsys.readouterr().err
    assert (
        "3 malformed input lines skipped" in err
        and f"{bad}:5: expected 2 tab-separated fields, found 1" in err
    )
    manifest = read_manifest(tmp_path / "o")
    assert manifest["malformed"]["count"] == 3
    assert manifest["malformed"]["first"] == [
        f"{bad}:5: expected 2 tab-separated fields, found 1",
        f"{bad}:10: expected 2 tab-separated fields, found 3",
        f"{bad}:12: not UTF-8 (invalid start byte at byte 4)",
    ]
    assert sum(manifest["splits"][s]["pairs"] for s in ("train", "valid", "test")) == 200 - 3


def test_unaligned_and_missing_inputs_are_one_line(files: dict[str, Path], tmp_path: Path) -> None:
    short = tmp_path / "short.fr"
    short.write_text("un\ndeux\n")
    with pytest.raises(ValueError, match=r"corpus\.en has 200 lines, .*short\.fr has 2"):
        prepare(CorpusSource(src=files["src"], tgt=short), tmp_path / "o", **ARGS)
    with pytest.raises(FileNotFoundError, match="corpus file not found: .*nope.tsv"):
        prepare(CorpusSource(tsv=tmp_path / "nope.tsv"), tmp_path / "o", **ARGS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="corpus directory has no files"):
        prepare(CorpusSource(tsv=tmp_path / "empty"), tmp_path / "o", **ARGS)
    broken = tmp_path / "broken.tsv.gz"
    broken.write_bytes(gzip.compress((files["root"] / "pairs.tsv").read_bytes())[:2000])
    with pytest.raises(ValueError, match=r"cannot read .*broken\.tsv\.gz"):
        prepare(CorpusSource(tsv=broken), tmp_path / "o", **ARGS)
    assert not (tmp_path / "o").exists()


def test_fast_tar_writer_matches_webdataset_byte_for_byte(tmp_path: Path) -> None:
    import numpy as np
    import webdataset as wds

    from pipeline.data.prepare.fast_tar import FastShardWriter

    samples = [
        {
            "__key__": f"l{i:08d}",
            "src.i32": np.arange(i % 50, dtype="<i4").tobytes(),
            "tgt.i32": np.arange(i % 37 + 1, dtype="<i4").tobytes(),
            "src.txt": "héllo " * (i % 9),
            "tgt.txt": "été 日本 " * (i % 13),
        }
        for i in range(450)
    ]  # fmt: skip  (i % 50 == 0: empty members)
    reference = wds.ShardWriter(str(tmp_path / "wds-%06d.tar"), maxcount=200, verbose=0, mtime=0)
    fast = FastShardWriter(str(tmp_path / "fast-%06d.tar"), maxcount=200)
    for sample in samples:
        reference.write(sample)
        fast.write(sample)
    reference.close()
    fast.close()
    assert fast.counts == [200, 200, 50] and len(fast.paths) == 3
    for i, path in enumerate(fast.paths):
        assert path.read_bytes() == (tmp_path / f"wds-{i:06d}.tar").read_bytes()
