"""Damaged prepared data fails before training with one clear line naming the file, split or sample.

Each case damages a fresh copy of a small prepared dir the way a user, a sync or bit rot would, then asserts the
error type and that the message names the culprit. These are part of the project's corrupted-state fuzz suite.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.manifest import dataset_hash, sha256_file
from pipeline.data.prepare.build import ensure_prepared, prepare
from pipeline.data.sources.corpus import CorpusSource
from pipeline.data.stream.loader import ShardError, build_loader
from pipeline.data.stream.verify import verify_prepared
from tests.unit.data_fixtures import write_parallel

pytestmark = pytest.mark.timeout(120)
BT = 400


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusSource:
    src, tgt = write_parallel(tmp_path_factory.mktemp("corpus"))
    return CorpusSource(src=src, tgt=tgt, valid_frac=0.1, test_frac=0.1)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, corpus: CorpusSource) -> tuple[Path, Path]:
    """(a prepared dir, another preparation of the same corpus with another seed and vocabulary)."""
    root = tmp_path_factory.mktemp("prepared")
    prepare(corpus, root / "data", vocab_size=300, max_len=48, shard_size=8, seed=1)
    prepare(corpus, root / "other", vocab_size=320, max_len=48, shard_size=8, seed=2)
    return root / "data", root / "other"


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d: Path, manifest: dict, rehash: bool = True) -> None:
    if rehash:
        manifest["dataset_hash"] = dataset_hash(manifest)
    (d / "manifest.json").write_text(json.dumps(manifest))


def _rewrite_shard(d: Path, rel: str, edit: Callable[[dict[str, bytes]], None]) -> None:
    """Rewrite one shard with the first sample edited, and record it in the manifest as if prepare wrote it."""
    with tarfile.open(d / rel) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    first_key = members[0][0].name.split(".")[0]
    files = {m.name: data for m, data in members if m.name.startswith(first_key + ".")}
    edit(files)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in members:
            data = files.get(member.name, data)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    (d / rel).write_bytes(buf.getvalue())
    manifest = _manifest(d)
    for shard in manifest["splits"][rel.split("/")[0]]["shards"]:
        if shard["path"] == rel:
            shard["sha256"], shard["bytes"] = sha256_file(d / rel), len(buf.getvalue())
    _write_manifest(d, manifest)


def _set_first_id(value: int) -> Callable[[dict[str, bytes]], None]:
    def edit(files: dict[str, bytes]) -> None:
        name = next(n for n in files if n.endswith(".tgt.i32"))
        ids = np.frombuffer(files[name], dtype="<i4").copy()
        ids[0] = value
        files[name] = ids.tobytes()

    return edit


def truncate(d: Path, other: Path) -> None:
    p = d / "train/shard-000002.tar"
    p.write_bytes(p.read_bytes()[:700])


def flip_byte(d: Path, other: Path) -> None:
    p = d / "train/shard-000002.tar"
    data = bytearray(p.read_bytes())
    data[600] ^= 0x01  # inside the first member's payload: same size, tar still parses
    p.write_bytes(bytes(data))


def garbage_same_size(d: Path, other: Path) -> None:
    p = d / "valid/shard-000001.tar"
    p.write_bytes(b"\x07" * p.stat().st_size)


def foreign_shard(d: Path, other: Path) -> None:
    shutil.copy(other / "train/shard-000002.tar", d / "train/shard-000002.tar")


def foreign_tokenizer(d: Path, other: Path) -> None:
    shutil.copy(other / "tokenizer.json", d / "tokenizer.json")


def empty_tokenizer(d: Path, other: Path) -> None:
    (d / "tokenizer.json").write_bytes(b"")


def deleted_tokenizer(d: Path, other: Path) -> None:
    (d / "tokenizer.json").unlink()


def dropped_from_manifest(d: Path, other: Path) -> None:
    manifest = _manifest(d)
    train = manifest["splits"]["train"]
    gone = train["shards"].pop(3)
    train["samples"] -= gone["samples"]
    _write_manifest(d, manifest)


def extra_shard(d: Path, other: Path) -> None:
    shutil.copy(other / "train/shard-000001.tar", d / "train/shard-000099.tar")


def deleted_shard(d: Path, other: Path) -> None:
    (d / "train/shard-000004.tar").unlink()


def edited_hash(d: Path, other: Path) -> None:
    manifest = _manifest(d)
    manifest["splits"]["train"]["shards"][0]["sha256"] = "0" * 64
    _write_manifest(d, manifest, rehash=False)


def counts_off(d: Path, other: Path) -> None:
    manifest = _manifest(d)
    manifest["splits"]["test"]["samples"] += 5
    _write_manifest(d, manifest)


def corrupt_json(d: Path, other: Path) -> None:
    (d / "manifest.json").write_text('{"format_version": 2, "splits": ')


def old_format(d: Path, other: Path) -> None:
    manifest = _manifest(d)
    manifest["format_version"] = 1
    _write_manifest(d, manifest)


def deleted_manifest(d: Path, other: Path) -> None:
    (d / "manifest.json").unlink()


def id_too_large(d: Path, other: Path) -> None:
    _rewrite_shard(d, "train/shard-000000.tar", _set_first_id(70_000))


def id_negative(d: Path, other: Path) -> None:
    _rewrite_shard(d, "valid/shard-000000.tar", _set_first_id(-3))


def emptied_split(d: Path, other: Path) -> None:
    manifest = _manifest(d)
    for shard in manifest["splits"]["test"]["shards"]:
        (d / shard["path"]).unlink()
    manifest["splits"]["test"].update(samples=0, shards=[])
    _write_manifest(d, manifest)


def _loader_error(d: Path, split: str, num_workers: int = 0) -> None:
    for _ in build_loader(d, split, batch_tokens=BT, num_workers=num_workers):
        pass


# name -> (damage, what is checked: "verify" (train start), "loader:<split>" (as shards are read), "ensure"),
#         expected exception type, regex the one-line message must match
CASES = {
    "truncated_shard": (truncate, "verify", ShardError, r"train/shard-000002\.tar.*bytes"),
    "truncated_shard_read": (truncate, "loader:train", ShardError, r"train/shard-000002\.tar"),
    "flipped_byte": (flip_byte, "loader:train", ShardError, r"train/shard-000002\.tar: sha256 differs"),
    "flipped_byte_full_verify": (flip_byte, "verify_hash", ShardError, r"train/shard-000002\.tar"),
    "garbage_same_size": (garbage_same_size, "loader:valid", ShardError, r"valid/shard-000001\.tar"),
    "foreign_shard": (foreign_shard, "loader:train", ShardError, r"train/shard-000002\.tar.*another"),
    "foreign_tokenizer": (foreign_tokenizer, "verify", ShardError, r"tokenizer\.json.*another preparation"),
    "empty_tokenizer": (empty_tokenizer, "verify", ShardError, r"tokenizer\.json"),
    "deleted_tokenizer": (deleted_tokenizer, "verify", ShardError, r"tokenizer missing: .*tokenizer\.json"),
    "shard_dropped_from_manifest": (
        dropped_from_manifest, "verify", ShardError, r"train/shard-000003\.tar is not listed"),
    "unlisted_extra_shard": (extra_shard, "verify", ShardError, r"train/shard-000099\.tar is not listed"),
    "deleted_shard": (deleted_shard, "verify", ShardError, r"shard missing: .*train/shard-000004\.tar"),
    "manifest_hash_edited": (edited_hash, "verify", ShardError, r"manifest\.json was edited"),
    "manifest_counts_off": (counts_off, "verify", ShardError, r"test shards do not add up"),
    "manifest_corrupt_json": (corrupt_json, "verify", ValueError, r"corrupt manifest .*manifest\.json"),
    "manifest_old_format": (old_format, "verify", ValueError, r"format_version=1.*pipeline data prepare"),
    "manifest_deleted": (deleted_manifest, "verify", FileNotFoundError, r"holds shards.*pipeline data prepare --out"),
    "manifest_deleted_ensure": (deleted_manifest, "ensure", FileNotFoundError, r"holds shards.*--force"),
    "manifest_deleted_loader": (deleted_manifest, "loader:train", FileNotFoundError, r"holds shards"),
    "token_id_too_large": (
        id_too_large, "loader:train", ShardError, r"shard-000000\.tar, sample l\d+: token id 70000 .*vocab_size=300"),
    "token_id_negative": (id_negative, "loader:valid", ShardError, r"valid/shard-000000\.tar, sample l\d+: token id -3"),
    "empty_split_on_disk": (emptied_split, "verify", ValueError, r"test split of corpus parallel:.* is empty"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("case", "workers"),
    [(c, 0) for c in sorted(CASES)] + [(c, 1) for c in sorted(CASES) if CASES[c][1].startswith("loader:")],
    ids=lambda v: {0: "in_process", 1: "worker"}.get(v, v) if isinstance(v, int) else v,
)
def test_damaged_data_is_a_clear_error(
    case: str, workers: int, prepared: tuple[Path, Path], tmp_path: Path
) -> None:
    """Every case in-process, and every case the loader finds also read by a worker process (data.num_workers
    > 0), whose error torch re-raises wrapped in the worker's traceback: the same one line must come out."""
    damage, check, exn_type, pattern = CASES[case]
    good, other = prepared
    d = tmp_path / "data"
    shutil.copytree(good, d)
    verify_prepared(d, hash_shards=True)  # the copy is whole before the damage
    damage(d, other)
    with pytest.raises(exn_type, match=pattern) as info:
        if check == "verify":
            verify_prepared(d)
        elif check == "verify_hash":
            verify_prepared(d, hash_shards=True)
        elif check == "ensure":
            ensure_prepared(d, corpus="parallel:x|y", vocab_size=300, max_len=48)
        else:
            _loader_error(d, check.split(":")[1], workers)
    assert "\n" not in str(info.value) and "DataLoader worker" not in str(info.value)


def test_damaged_shard_yields_no_sample_before_the_error(prepared: tuple[Path, Path], tmp_path: Path) -> None:
    """The hash is checked before a shard's first sample, so not one sample of a flipped shard is decoded."""
    d = tmp_path / "data"
    shutil.copytree(prepared[0], d)
    flip_byte(d, prepared[1])
    dataset = build_loader(d, "train", batch_tokens=BT).dataset
    shard = next(s for s in dataset.shards if s["path"] == "train/shard-000002.tar")
    reader = dataset._read_shard(shard)
    with pytest.raises(ShardError, match="sha256 differs"):
        next(reader)


@pytest.mark.parametrize(
    ("kwargs", "split", "pattern"),
    [
        ({"max_len": 1}, "train", r"train split of corpus parallel:.* is empty: all 160 pairs longer than max_len=1"),
        ({"max_len": 48}, "valid", r"valid split of corpus parallel:.* is empty: the corpus gives it no pairs"),
    ],
)  # fmt: skip
def test_prepare_refuses_an_empty_split(
    corpus: CorpusSource, tmp_path: Path, kwargs: dict, split: str, pattern: str
) -> None:
    if split == "valid":  # two lines: too few for held-out blocks (a zero fraction is refused earlier)
        (tmp_path / "two.en").write_text("one cat\ntwo dogs\n")
        (tmp_path / "two.fr").write_text("un chat\ndeux chiens\n")
        corpus = CorpusSource(src=tmp_path / "two.en", tgt=tmp_path / "two.fr", valid_frac=0.1, test_frac=0.1)
    with pytest.raises(ValueError, match=pattern):
        prepare(corpus, tmp_path / "out", vocab_size=300, shard_size=8, **kwargs)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("two.")] == []  # nothing half-written


def test_infinite_stream_with_no_samples_for_a_slot_raises(prepared: tuple[Path, Path]) -> None:
    """More reader slots than test samples: an endless stream over nothing is an error, not a hang."""
    n = _manifest(prepared[0])["splits"]["test"]["samples"]
    loader = build_loader(prepared[0], "test", batch_tokens=BT, rank=n, world_size=n + 1, infinite=True)
    with pytest.raises(ShardError, match=rf"test split .* gives reader slot {n} of {n + 1}.*no samples"):
        next(iter(loader))


def test_missing_manifest_rebuilds_only_with_force(
    prepared: tuple[Path, Path], corpus: CorpusSource, tmp_path: Path
) -> None:
    d = tmp_path / "data"
    shutil.copytree(prepared[0], d)
    (d / "manifest.json").unlink()
    with pytest.raises(FileExistsError, match="holds shards but no manifest.json"):
        prepare(corpus, d, vocab_size=300, max_len=48, shard_size=8, seed=1)
    rebuilt = prepare(corpus, d, vocab_size=300, max_len=48, shard_size=8, seed=1, force=True)
    assert rebuilt["dataset_hash"] == _manifest(prepared[0])["dataset_hash"]  # the same shards, byte for byte


def test_prepare_rebuilds_a_damaged_dir_with_same_arguments(
    prepared: tuple[Path, Path], corpus: CorpusSource, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    d = tmp_path / "data"
    shutil.copytree(prepared[0], d)
    flip_byte(d, prepared[1])
    prepare(corpus, d, vocab_size=300, max_len=48, shard_size=8, seed=1)
    err = capsys.readouterr().err
    assert "rebuilding" in err and "train/shard-000002.tar" in err
    verify_prepared(d, hash_shards=True)  # whole again


def test_cli_prepare_with_an_empty_split_exits_2_naming_it(
    corpus: CorpusSource, tmp_path: Path, capsys
) -> None:
    import argparse

    from pipeline.data.prepare.command import add_prepare_arguments, run_prepare

    parser = argparse.ArgumentParser()
    add_prepare_arguments(parser)
    args = parser.parse_args(["--src", str(corpus.src), "--tgt", str(corpus.tgt), "--out", str(tmp_path / "o"),
                              "--vocab-size", "300", "--max-len", "1"])  # fmt: skip
    assert run_prepare(args) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("pipeline data prepare: error: train split of corpus parallel:")
        and "longer than max_len=1" in err
    )
    assert "\n" not in err and not (tmp_path / "o").exists()


def _key_paths(value: object, path: tuple = ()) -> list[tuple]:
    """Every key of a manifest, nested (lists: their first item), as a path of keys and indices."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in [(*path, k), *_key_paths(v, (*path, k))]]
    if isinstance(value, list) and value:
        return _key_paths(value[0], (*path, 0))
    return []


def _edit(manifest: dict, path: tuple, how: str) -> None:
    *parents, last = path
    node = manifest
    for k in parents:
        node = node[k]
    if how == "deleted":
        del node[last]
    else:
        node[last] = {"a_string": "x", "null": None, "a_list": [1]}[how]


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_every_manifest_key_missing_or_mistyped_is_one_line(
    split: str, prepared: tuple[Path, Path], tmp_path: Path
) -> None:
    """A hand-edited manifest (e.g. without `splits`: it was a KeyError): every key the real manifest has, deleted
    or of the wrong type, ends in one error naming the manifest (or the shard it lists), or is harmless (start check and a read pass)."""
    real = _manifest(prepared[0])
    paths = [p for p in _key_paths(real) if p[0] != "splits" or len(p) < 2 or p[1] == split]
    assert len(paths) >= 15
    failures = []
    d = tmp_path / "data"
    shutil.copytree(prepared[0], d)
    for path in paths:
        for how in ("deleted", "a_string", "null", "a_list"):
            manifest = json.loads(json.dumps(real))
            _edit(manifest, path, how)
            (d / "manifest.json").write_text(json.dumps(manifest))
            try:
                verify_prepared(d)
                _loader_error(d, split)
            except (ValueError, ShardError, FileNotFoundError) as err:
                if "\n" in str(err) or str(d) not in str(err):  # names the manifest or the shard
                    failures.append(f"{path} {how}: {type(err).__name__}: {err}")
            except Exception as err:  # noqa: BLE001 - a KeyError/TypeError is what this test looks for
                failures.append(f"{path} {how}: {type(err).__name__}: {err}")
    assert not failures, "\n".join(failures)
