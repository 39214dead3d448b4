"""Long sequences from the corpus: passage translation and language-modelling windows."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data import text as text_mod
from pipeline.data.manifest import read_manifest
from pipeline.data.prepare.build import prepare
from pipeline.data.prepare.command import add_prepare_arguments, run_prepare
from pipeline.data.sources import bible as bible_mod
from pipeline.data.sources.bible import book_of
from pipeline.data.sources.corpus import CorpusSource
from pipeline.data.sources.lm import load_documents
from pipeline.data.sources.passages import join_passages, passage_lengths
from pipeline.data.stream.loader import build_loader
from pipeline.data.tokenizer import BOS_ID, EOS_ID, load_tokenizer, train_tokenizer
from tests.unit.data_fixtures import write_parallel

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def parallel(tmp_path_factory: pytest.TempPathFactory) -> CorpusSource:
    src, tgt = write_parallel(tmp_path_factory.mktemp("corpus"), n=300)
    return CorpusSource(src=src, tgt=tgt, valid_frac=0.1, test_frac=0.1)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src, _ = write_parallel(tmp_path_factory.mktemp("text"), n=400, seed=3)
    return src


def all_batches(d: Path, split: str, **kw) -> list[dict]:
    return list(build_loader(d, split, batch_tokens=kw.pop("batch_tokens", 4096), with_text=True, **kw))


def test_passages_join_consecutive_lines_within_their_split(parallel: CorpusSource, tmp_path: Path) -> None:
    manifest = prepare(
        parallel, tmp_path / "p", vocab_size=300, shard_size=16, task="passages", passage_len=200
    )
    assert manifest["task"] == "passages" and manifest["max_len"] == 200
    tok = load_tokenizer(tmp_path / "p")
    src_lines = parallel.src.read_text().splitlines()
    blocks = {"train": range(0, 240), "valid": range(240, 270), "test": range(270, 300)}
    for split, lines in blocks.items():
        covered: list[int] = []
        for batch in all_batches(tmp_path / "p", split):
            for row, key in enumerate(batch["keys"]):
                first, _, last = key.partition("-")
                a, b = int(first[1:]), int((last or first)[1:])
                assert batch["src_text"][row] == " ".join(src_lines[a : b + 1])  # consecutive lines, in order
                n_src = int(batch["src_mask"][row].sum())
                assert n_src == len(tok.encode(batch["src_text"][row])) <= 200  # the computed length is exact
                assert int((batch["tgt_out"][row] != 0).sum()) - 1 <= 200
                covered += range(a, b + 1)
        dropped = manifest["splits"][split]["verses_dropped_overlong"]
        assert len(covered) == len(set(covered)) == len(lines) - dropped
        assert set(covered) <= set(lines)  # no passage crosses a held-out block
    train = manifest["splits"]["train"]
    assert (
        train["samples"] < 240 / 2 and train["src_tokens"] / train["samples"] > 100
    )  # long, not verse-sized


def test_passages_never_cross_a_chapter() -> None:
    examples = [(f"b01c{c:03d}v{v:03d}", f"chapter {c} verse {v} says hello", f"chapitre {c} verset {v}")
                for c in (1, 2) for v in range(1, 7)]  # fmt: skip
    tok = train_tokenizer([t for _, s, t in examples for t in (s,)], vocab_size=300)
    passages, dropped = join_passages(examples, passage_lengths(tok, examples), 10_000)
    assert dropped == 0 and [p[0] for p in passages] == ["b01c001v001-b01c001v006", "b01c002v001-b01c002v006"]
    assert all(book_of(p[0]) == 1 for p in passages)
    passages, _ = join_passages(
        examples, passage_lengths(tok, examples), len(tok.encode(examples[0][1])) * 2 + 3
    )
    assert len(passages) > 2
    assert all(p[0][:7] == p[0].split("-")[-1][:7] for p in passages)


def test_passage_len_the_corpus_cannot_fill_is_one_line(parallel: CorpusSource, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError,
        match=r"data\.passage_len=100000 cannot be filled by parallel:.*use data\.passage_len <= \d+",
    ):
        prepare(parallel, tmp_path / "p", vocab_size=300, task="passages", passage_len=100_000)  # fmt: skip
    with pytest.raises(ValueError, match="needs data.passage_len"):
        prepare(parallel, tmp_path / "p", vocab_size=300, task="passages")
    assert not (tmp_path / "p").exists()


def test_lm_windows_are_the_contiguous_token_stream(text_file: Path, tmp_path: Path) -> None:
    """Disjoint windows of context + 1 tokens; every batch feeds BOS first and every window token is a target."""
    source = CorpusSource(text=text_file, valid_frac=0.1, test_frac=0.1)
    manifest = prepare(source, tmp_path / "lm", vocab_size=300, shard_size=8, task="lm", context=64)
    assert manifest["task"] == "lm" and manifest["max_len"] == 64
    tok = load_tokenizer(tmp_path / "lm")
    lines = [text_mod.clean_text(x) for x in text_file.read_text().splitlines()]
    blocks = {"train": lines[:320], "valid": lines[320:360], "test": lines[360:]}
    for split, block in blocks.items():
        batches = all_batches(tmp_path / "lm", split, batch_tokens=65 * 5)
        windows = {k: tout for b in batches for k, tout in zip(b["keys"], b["tgt_out"], strict=True)}
        for b in batches:
            assert b["src"].shape == (b["tgt_in"].shape[0], 0) and b["tgt_in"].shape[1] == 65
            assert (b["tgt_in"][:, 0] == BOS_ID).all()  # BOS first in every window of every batch
            assert (
                torch.equal(b["tgt_in"][:, 1:], b["tgt_out"][:, :-1])
                and b["n_tokens"] == b["tgt_out"].numel()
            )
        stream = np.concatenate([windows[k].numpy() for k in sorted(windows)])
        expected = tok.encode("\n".join(block)) + [EOS_ID]
        assert len(windows) == len(expected) // 65 == manifest["splits"][split]["samples"]
        assert stream.tolist() == expected[: len(windows) * 65]  # disjoint, nothing skipped or repeated
        if split != "train":  # a text corpus has one document per split: every unit is that block
            for unit in ("document", "book", "chapter"):
                assert manifest["windows"][split][unit] == [f"{split}block"] * len(windows)
    train_keys = [k for b in all_batches(tmp_path / "lm", "train", batch_tokens=64 * 5) for k in b["keys"]]
    assert train_keys != sorted(train_keys)  # train windows are shuffled before sharding


def test_lm_bad_context_and_max_len_are_one_line(text_file: Path, tmp_path: Path) -> None:
    source = CorpusSource(text=text_file, valid_frac=0.1, test_frac=0.1)
    with pytest.raises(
        ValueError, match=r"data\.context=100000 cannot be filled by the train split of text:"
    ):
        prepare(source, tmp_path / "lm", vocab_size=300, task="lm", context=100_000)
    with pytest.raises(ValueError, match="monolingual"):
        prepare("bible:4-l", tmp_path / "lm", vocab_size=300, task="lm", context=64)
    prepare(source, tmp_path / "lm", vocab_size=300, task="lm", context=64)
    with pytest.raises(ValueError, match="max_len=32 is below the LM context 64"):
        build_loader(tmp_path / "lm", "train", batch_tokens=640, max_len=32)
    with pytest.raises(ValueError, match=r"batch_tokens=64 is below the widest possible sample \(65"):
        build_loader(tmp_path / "lm", "train", batch_tokens=64)  # BOS + 64 tokens


def test_lm_bible_holds_out_the_same_books_in_every_translation() -> None:
    docs = load_documents(CorpusSource(bible="bible:4+k+3"))
    for split, books in (("valid", bible_mod.VALID_BOOKS), ("test", bible_mod.TEST_BOOKS)):
        names = {name for name, _ in docs[split]}
        assert names == {f"t{c}b{b:02d}" for c in "4k3" for b in books}
    train_books = {int(name[3:]) for name, _ in docs["train"]}
    assert len(docs["train"]) == 3 * 58 and not train_books & set(
        bible_mod.VALID_BOOKS + bible_mod.TEST_BOOKS
    )
    ruth = dict(docs["valid"])["t4b08"]
    assert ruth.count("\n") == 3 and len(ruth.split()) > 2000  # 4 chapters, whole book in one document
    with pytest.raises(ValueError, match="'2' is not allowed"):
        CorpusSource(bible="bible:4+2")


def test_cli_task_flags(text_file: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_prepare_arguments(parser)
    args = parser.parse_args(["--text", str(text_file), "--out", str(tmp_path / "o"), "--vocab-size", "300",
                              "--task", "lm", "--context", "32"])  # fmt: skip
    assert run_prepare(args) == 0 and read_manifest(tmp_path / "o")["context"] == 32


def test_lm_reads_a_directory_of_text_files_and_counts_bad_lines(text_file: Path, tmp_path: Path) -> None:
    import gzip

    lines = text_file.read_bytes().splitlines(keepends=True)
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "a.txt").write_bytes(b"".join(lines[:200]))
    (tmp_path / "books" / "b.txt.gz").write_bytes(gzip.compress(b"".join(lines[200:]) + b"bad \xff line\n"))
    one = prepare(CorpusSource(text=text_file, valid_frac=0.1, test_frac=0.1), tmp_path / "one", vocab_size=300,
                  task="lm", context=64)  # fmt: skip
    many = prepare(CorpusSource(text=tmp_path / "books", valid_frac=0.1, test_frac=0.1), tmp_path / "many",
                   vocab_size=300, task="lm", context=64)  # fmt: skip
    assert many["malformed"]["count"] == 1 and many["malformed"]["first"][0].startswith(
        f"{tmp_path / 'books' / 'b.txt.gz'}:201: not UTF-8"
    )
    assert many["dataset_hash"] == one["dataset_hash"]  # the same windows as the single file
