"""Data part: corpus -> tokenizer -> tar shards -> length-bucketed, sharded, resumable batches."""

from __future__ import annotations

import argparse
import json
import shutil
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
import torch

from pipeline.data import text as text_mod
from pipeline.data.manifest import read_manifest, sha256_file
from pipeline.data.prepare import output as output_mod
from pipeline.data.prepare.build import ensure_prepared, prepare
from pipeline.data.prepare.command import add_prepare_arguments, run_prepare
from pipeline.data.sources import bible as bible_mod
from pipeline.data.sources.bible import book_of
from pipeline.data.sources.corpus import CorpusSource, load_splits
from pipeline.data.stream.loader import ShardError, build_loader
from pipeline.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, load_tokenizer, train_tokenizer
from tests.unit.data_fixtures import write_parallel

pytestmark = pytest.mark.timeout(120)
BT = 400  # batch_tokens for the synthetic corpus (max_len 48 -> widest sample 49)


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_parallel(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, corpus_files: tuple[Path, Path]) -> Path:
    """200 pairs -> 160/20/20 contiguous blocks, 8 samples a shard (20 train shards)."""
    src, tgt = corpus_files
    out = tmp_path_factory.mktemp("prepared") / "data"
    source = CorpusSource(src=src, tgt=tgt, valid_frac=0.1, test_frac=0.1)
    prepare(source, out, vocab_size=300, max_len=48, shard_size=8, seed=1)
    return out


def keys_of(loader) -> list[str]:
    return [k for batch in loader for k in batch["keys"]]


def test_round_trip_text_ids_shards_ids_text(data_dir: Path, corpus_files: tuple[Path, Path]) -> None:
    tok = load_tokenizer(data_dir / "tokenizer.json")
    src_lines = corpus_files[0].read_text().splitlines()
    tgt_lines = corpus_files[1].read_text().splitlines()
    seen = 0
    for split in ("train", "valid", "test"):
        for batch in build_loader(data_dir, split, batch_tokens=BT, with_text=True):
            for row, key in enumerate(batch["keys"]):
                line = int(key[1:])
                n_src = int(batch["src_mask"][row].sum())
                assert (
                    tok.decode(batch["src"][row, :n_src].tolist())
                    == src_lines[line]
                    == batch["src_text"][row]
                )
                assert tok.decode(batch["tgt_out"][row].tolist()) == tgt_lines[line] == batch["tgt_text"][row]
                seen += 1
    assert seen == sum(read_manifest(data_dir)["splits"][s]["samples"] for s in ("train", "valid", "test"))
    # literal special-token strings are ordinary text, never ids 0..3; NFD input comes back NFC
    odd = "x <pad> <eos> cafe\u0301 日本"
    ids = tok.encode(odd)
    assert min(ids) > 3 and tok.decode(ids) == unicodedata.normalize("NFC", odd)


def test_manifest_counts_and_hashes_match_shards(data_dir: Path) -> None:
    manifest = read_manifest(data_dir)
    assert manifest["special_ids"] == {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3}
    train = manifest["splits"]["train"]
    assert train["samples"] + train["dropped_overlong"] == 160
    assert len(train["shards"]) == -(-train["samples"] // 8)
    for split in ("train", "valid", "test"):
        info = manifest["splits"][split]
        assert sum(s["samples"] for s in info["shards"]) == info["samples"]
        batches = list(build_loader(data_dir, split, batch_tokens=BT))
        assert sum(b["src"].shape[0] for b in batches) == info["samples"]
        assert sum(b["n_src_tokens"] for b in batches) == info["src_tokens"]
        assert sum(b["n_tokens"] for b in batches) == info["tgt_tokens"] + info["samples"]  # + one EOS each
        for shard in info["shards"]:
            assert sha256_file(data_dir / shard["path"]) == shard["sha256"]


def test_batches_padding_masks_and_budget(data_dir: Path) -> None:
    tok = load_tokenizer(data_dir)
    batches = list(build_loader(data_dir, "train", batch_tokens=BT, bucket_size=64, with_text=True))
    assert len(batches) > 3
    for b in batches:
        src_len = torch.tensor([len(tok.encode(t)) for t in b["src_text"]])
        tgt_len = torch.tensor([len(tok.encode(t)) for t in b["tgt_text"]]) + 1
        assert torch.equal(b["src_mask"], torch.arange(b["src"].shape[1]) < src_len[:, None])
        assert torch.equal(b["src"] != PAD_ID, b["src_mask"])
        assert (b["tgt_in"][:, 0] == BOS_ID).all()
        assert torch.equal(
            b["tgt_out"][torch.arange(len(tgt_len)), tgt_len - 1], torch.full_like(tgt_len, EOS_ID)
        )
        for row, n in enumerate(tgt_len.tolist()):  # tgt_in = BOS + tgt, tgt_out = tgt + EOS, zeros after
            assert torch.equal(b["tgt_in"][row, 1:n], b["tgt_out"][row, : n - 1])
            assert not b["tgt_in"][row, n:].any() and not b["tgt_out"][row, n:].any()
        assert b["n_tokens"] == int(tgt_len.sum()) and b["n_src_tokens"] == int(src_len.sum())
        assert b["src"].shape[0] * max(b["src"].shape[1], b["tgt_in"].shape[1]) <= BT
        assert b["src"].dtype == b["tgt_in"].dtype == torch.long and b["src_mask"].dtype == torch.bool


def test_batch_tokens_below_widest_sample_is_an_error(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="batch_tokens=10"):
        build_loader(data_dir, "train", batch_tokens=10)


@pytest.mark.parametrize("split", ["train", "valid"])
def test_two_ranks_two_workers_see_every_sample_once(data_dir: Path, split: str) -> None:
    seen = Counter()
    for rank in (0, 1):
        seen.update(keys_of(build_loader(data_dir, split, batch_tokens=BT, rank=rank, world_size=2, num_workers=2,
                                         with_text=True)))  # fmt: skip
    assert set(seen.values()) == {1}
    assert sum(seen.values()) == read_manifest(data_dir)["splits"][split]["samples"]


def test_sample_index_split_when_fewer_shards_than_slots(
    tmp_path: Path, corpus_files: tuple[Path, Path]
) -> None:
    src, tgt = corpus_files
    out = prepare(
        CorpusSource(src=src, tgt=tgt), tmp_path / "d", vocab_size=300, max_len=48, shard_size=10_000
    )
    assert len(out["splits"]["train"]["shards"]) == 1
    per_rank = [keys_of(build_loader(tmp_path / "d", "train", batch_tokens=BT, rank=r, world_size=3, with_text=True))
                for r in range(3)]  # fmt: skip
    assert (
        all(per_rank)
        and sum(map(len, per_rank)) == len(set().union(*per_rank)) == out["splits"]["train"]["samples"]
    )


def test_order_is_deterministic_and_epochs_reshuffle(data_dir: Path) -> None:
    def order(**kw) -> list[str]:
        return keys_of(build_loader(data_dir, "train", batch_tokens=BT, bucket_size=32, with_text=True, **kw))

    assert order(seed=3) == order(seed=3)
    assert order(seed=3) != order(seed=4)
    assert order(seed=3, epoch=1) != order(seed=3) and sorted(order(seed=3, epoch=1)) == sorted(order(seed=3))
    loader = build_loader(data_dir, "train", batch_tokens=BT, bucket_size=32, seed=3, with_text=True)
    assert keys_of(loader) == order(seed=3) and keys_of(loader) == order(
        seed=3, epoch=1
    )  # next pass = next epoch
    assert keys_of(build_loader(data_dir, "valid", batch_tokens=BT, with_text=True, epoch=5)) == keys_of(
        build_loader(data_dir, "valid", batch_tokens=BT, with_text=True))  # fmt: skip


def test_infinite_repeats_reshuffled_epochs(data_dir: Path) -> None:
    n = read_manifest(data_dir)["splits"]["train"]["samples"]
    loader = build_loader(data_dir, "train", batch_tokens=BT, infinite=True, with_text=True)
    keys: list[str] = []
    for batch in loader:
        keys += batch["keys"]
        if len(keys) >= 2 * n + 1:
            break
    assert Counter(keys[:n]) == Counter(keys[n : 2 * n]) and keys[:n] != keys[n : 2 * n]
    assert loader.state_dict()["workers"]["0"]["epoch"] == 2


@pytest.mark.parametrize(("num_workers", "infinite"), [(0, False), (2, False), (0, True)])
def test_resume_continues_at_next_unseen_batch(data_dir: Path, num_workers: int, infinite: bool) -> None:
    def loader(infinite: bool = infinite):
        return build_loader(data_dir, "train", batch_tokens=BT, bucket_size=32, seed=5, num_workers=num_workers,
                            infinite=infinite, with_text=True)  # fmt: skip

    def take(ld, k: int) -> list[list[str]]:
        out = []
        for batch in ld:
            out.append(batch["keys"])
            if len(out) == k:
                break
        return out

    n_batches = len(list(loader(infinite=False)))
    half = n_batches // 2 if not infinite else n_batches  # infinite: resume across the epoch boundary
    half -= half % 2  # with 2 workers, stop after a full round robin so the straight order is comparable
    straight = take(loader(), 2 * half)
    first = loader()
    assert take(first, half) == straight[:half]
    state = json.loads(json.dumps(first.state_dict()))  # must survive a checkpoint round trip
    resumed = loader()
    resumed.load_state_dict(state)
    assert take(resumed, half) == straight[half:]


def test_resume_per_rank_states_and_refuses_other_world_size(data_dir: Path) -> None:
    def loader(rank: int, world_size: int = 2):
        return build_loader(
            data_dir, "train", batch_tokens=BT, rank=rank, world_size=world_size, with_text=True
        )

    loaders = [loader(0), loader(1)]
    for ld in loaders:
        next(iter(ld))
    both = {"ranks": [ld.state_dict() for ld in loaders]}
    resumed = loader(1)
    resumed.load_state_dict(both)
    assert keys_of(resumed) == keys_of(loader(1))[len(next(iter(loader(1)))["keys"]) :]
    with pytest.raises(ValueError, match="rank"):
        loader(1).load_state_dict(both["ranks"][0])  # rank 0's state on rank 1 would replay the wrong samples
    with pytest.raises(ValueError, match="world_size"):
        loader(0, world_size=1).load_state_dict(both["ranks"][0])


def test_missing_data_dir_manifest_and_shard(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pipeline data prepare"):
        build_loader(tmp_path / "nope", "train", batch_tokens=BT)
    with pytest.raises(FileNotFoundError, match="pipeline data prepare"):
        build_loader(tmp_path, "train", batch_tokens=BT)
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    (copy / "train" / "shard-000004.tar").unlink()
    with pytest.raises(ShardError, match="shard-000004.tar"):
        build_loader(copy, "train", batch_tokens=BT)


@pytest.mark.parametrize("damage", ["garbage", "truncate"])
def test_corrupt_shard_error_names_it(tmp_path: Path, data_dir: Path, damage: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    shard = copy / "valid" / "shard-000001.tar"
    data = shard.read_bytes()
    shard.write_bytes(b"\x07not a tar file" * 700 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ShardError, match="valid/shard-000001.tar"):
        list(build_loader(copy, "valid", batch_tokens=BT))


def test_parallel_file_errors(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\nthree\n")
    (tmp_path / "b.txt").write_text("un\ndeux\n")
    with pytest.raises(ValueError, match=r"a\.txt has 3 lines.*b\.txt has 2"):
        prepare(CorpusSource(src=tmp_path / "a.txt", tgt=tmp_path / "b.txt"), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        prepare(CorpusSource(src=tmp_path / "a.txt", tgt=tmp_path / "missing.txt"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_plain_text_is_next_sentence_with_contiguous_splits(tmp_path: Path) -> None:
    lines = [f"sentence {i}" for i in range(20)]
    (tmp_path / "t.txt").write_text("\n\n".join(lines) + "\n")  # blank lines are skipped
    splits = load_splits(CorpusSource(text=tmp_path / "t.txt", valid_frac=0.2, test_frac=0.2))
    assert splits["train"][0][1:] == ("sentence 0", "sentence 1")
    blocks = {name: {s for _, a, b in ex for s in (a, b)} for name, ex in splits.items()}
    assert blocks["train"] == {f"sentence {i}" for i in range(12)} and blocks["test"] == {
        f"sentence {i}" for i in range(16, 20)}  # fmt: skip
    assert all(len(ex) == 3 for name, ex in splits.items() if name != "train")


def test_bible_codes_split_and_cleaning() -> None:
    with pytest.raises(ValueError, match="'2' is not allowed"):
        CorpusSource(bible="bible:4-2")
    with pytest.raises(ValueError, match="bad bible spec"):
        CorpusSource(bible="bible:english-french")
    splits = load_splits(CorpusSource(bible="bible:4-l"))
    books = {name: {book_of(k) for k, _, _ in ex} for name, ex in splits.items()}
    assert books["valid"] == set(bible_mod.VALID_BOOKS) and books["test"] == set(bible_mod.TEST_BOOKS)
    assert not (
        books["train"] & books["valid"] or books["train"] & books["test"] or books["valid"] & books["test"]
    )
    texts = [t for ex in splits.values() for _, s, t in ex for t in (s, t)]
    assert all(
        t and "\u00ad" not in t and "(*)" not in t and not text_mod._VERSE_MARKER.search(t) for t in texts
    )
    assert sum(map(len, splits.values())) > 30_000
    assert text_mod.clean_text("(3:2) Et\u00adil dit:  (*) oui ") == "Etil dit: oui"


def test_real_corpus_prepare_subset_is_idempotent_and_atomic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bible"
    manifest = ensure_prepared(out, corpus="bible:4-l", vocab_size=320, max_len=64, limit=40)
    assert manifest["corpus"] == "bible:4-l"
    assert [manifest["splits"][s]["samples"] for s in ("train", "valid", "test")] == [
        40,
        40,
        40,
    ]  # after drops
    keys = keys_of(build_loader(out, "train", batch_tokens=256, with_text=True))
    assert len({book_of(k) for k in keys}) > 10  # the seeded shuffle spreads a limited train split over books
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert prepare("bible:4-l", out, vocab_size=320, max_len=64, limit=40) == manifest
    assert (out / "manifest.json").stat().st_mtime_ns == stamp  # nothing redone
    with pytest.raises(ValueError, match="vocab_size"):
        ensure_prepared(out, corpus="bible:4-l", vocab_size=999, max_len=64)

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(output_mod, "_write_split", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare("bible:4-l", tmp_path / "fresh", vocab_size=320, max_len=64, limit=40)
    assert not (tmp_path / "fresh").exists() and list(tmp_path.iterdir()) == [out]


def test_cli_entry_points(
    tmp_path: Path, corpus_files: tuple[Path, Path], capsys: pytest.CaptureFixture
) -> None:
    parser = argparse.ArgumentParser()
    add_prepare_arguments(parser)
    src, _ = corpus_files
    args = parser.parse_args(
        ["--src", str(src), "--tgt", str(tmp_path / "nope.fr"), "--out", str(tmp_path / "o")]
    )
    assert run_prepare(args) == 2 and "nope.fr" in capsys.readouterr().err
    args = parser.parse_args(["--corpus", "bible:4-x", "--out", str(tmp_path / "o")])
    assert run_prepare(args) == 2 and "'x' is not allowed" in capsys.readouterr().err
    args = parser.parse_args(["--text", str(src), "--out", str(tmp_path / "o"), "--vocab-size", "300"])
    assert run_prepare(args) == 0 and read_manifest(tmp_path / "o")["corpus"].startswith("text:")


def test_tokenizer_has_fixed_special_ids() -> None:
    tok = train_tokenizer(["hello world", "bonjour le monde"] * 5, vocab_size=280)
    assert [tok.tokenizer.token_to_id(t) for t in ("<pad>", "<bos>", "<eos>", "<unk>")] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["x"], vocab_size=100)
