"""`docs:DIR`: a language-modelling corpus of one document a file, held out whole, each held-out document a cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pipeline.data.prepare.build import prepare
from pipeline.data.prepare.command import add_prepare_arguments, source_from_args
from pipeline.data.sources.corpus import CorpusSource, load_splits, parse_source
from pipeline.data.sources.documents import split_by_name
from pipeline.data.sources.lm import load_documents
from pipeline.data.sources.readers import Malformed
from pipeline.training.truncation_run import cluster_unit
from tests.unit.data_fixtures import write_parallel

pytestmark = pytest.mark.timeout(120)


def _books(root: Path, n: int, lines_each: int = 60) -> dict[str, str]:
    """``n`` files of distinct verse text; name -> the text's first line (to find where a book went)."""
    verses = root.parent / f".{root.name}-verses"  # beside the books, hidden: no document of the corpus
    verses.mkdir(parents=True, exist_ok=True)
    src, _ = write_parallel(verses, n=n * lines_each, seed=sum(root.name.encode()))
    lines = src.read_text().splitlines()
    root.mkdir(parents=True, exist_ok=True)
    first = {}
    for i in range(n):
        part = lines[i * lines_each : (i + 1) * lines_each]
        (root / f"book{i:03d}.txt").write_text("\n".join(part) + "\n")
        first[f"book{i:03d}.txt"] = part[0]
    return first


def test_whole_documents_are_held_out_and_keep_their_split_when_others_are_added() -> None:
    names = [f"book{i:04d}.txt" for i in range(2000)]
    split = split_by_name(names, 0.05, 0.1, Path("lib"))
    assert sorted(sum(split.values(), [])) == sorted(names)  # every document in exactly one split
    assert 0.07 < len(split["test"]) / 2000 < 0.13 and 0.03 < len(split["valid"]) / 2000 < 0.07
    more = split_by_name([*names, *(f"new{i}.txt" for i in range(500))], 0.05, 0.1, Path("lib"))
    for name in ("train", "valid", "test"):
        assert set(split[name]) <= set(more[name])  # adding documents moves none already placed
    assert (
        split_by_name(list(reversed(names)), 0.05, 0.1, Path("lib")) == split
    )  # listing order is irrelevant
    few = split_by_name(["a", "b", "c"], 0.05, 0.05, Path("lib"))
    assert all(len(v) == 1 for v in few.values())  # shares leave held-out splits empty: one document each
    with pytest.raises(ValueError, match=r"docs:lib has 2 document file\(s\).*at least 3.*text:lib"):
        split_by_name(["a", "b"], 0.05, 0.05, Path("lib"))


def test_a_flat_directory_is_split_by_document(tmp_path: Path) -> None:
    first = _books(tmp_path / "lib", 12)
    docs = load_documents(CorpusSource(docs=tmp_path / "lib", valid_frac=0.2, test_frac=0.2), Malformed())
    names = {split: [n for n, _ in d] for split, d in docs.items()}
    assert sorted(sum(names.values(), [])) == sorted(f"docs/{n}" for n in first)
    assert all(names[s] for s in ("train", "valid", "test"))
    for d in docs.values():  # each document's text is its own file's, whole
        for name, text in d:
            assert text.splitlines()[0] == first[name.removeprefix("docs/")] and len(text.splitlines()) == 60


def test_the_corpus_split_directories_are_kept(tmp_path: Path) -> None:
    for split, n in (("train", 5), ("validation", 2), ("test", 3)):  # PG-19's names
        _books(tmp_path / "pg19" / split, n)
    source = parse_source(f"docs:{tmp_path / 'pg19'}")
    assert source.docs == tmp_path / "pg19" and source.spec == f"docs:{tmp_path / 'pg19'}"
    docs = load_documents(source)
    assert [len(docs[s]) for s in ("train", "valid", "test")] == [5, 2, 3]
    assert all(name.startswith("docs/validation/") for name, _ in docs["valid"])
    assert len(source.describe()["sha256"]) == 10  # every file's hash: an edited book re-prepares
    (tmp_path / "half").mkdir()
    _books(tmp_path / "half" / "train", 3)
    with pytest.raises(
        ValueError, match=r"has split directories but not valid \(valid or validation\), test"
    ):
        load_documents(CorpusSource(docs=tmp_path / "half"))


def test_held_out_documents_are_the_clusters_of_the_prepared_windows(tmp_path: Path) -> None:
    _books(tmp_path / "lib", 16, lines_each=80)
    manifest = prepare(CorpusSource(docs=tmp_path / "lib", valid_frac=0.25, test_frac=0.25), tmp_path / "data",
                       vocab_size=300, task="lm", context=64)  # fmt: skip
    clusters = manifest["windows"]["valid"]
    valid_docs = {n for n, _ in load_documents(CorpusSource(docs=tmp_path / "lib", valid_frac=0.25, test_frac=0.25))["valid"]}  # fmt: skip
    assert len(valid_docs) >= 2 and set(clusters["document"]) == valid_docs  # each held-out book is a cluster
    assert clusters["chapter"] == clusters["document"] == clusters["book"]  # a book has no chapters here
    assert manifest["corpus"] == f"docs:{tmp_path / 'lib'}"
    assert cluster_unit(manifest) == "document" and cluster_unit({"corpus": "bible:4+k+3"}) == "chapter"


def test_docs_is_for_language_modelling_and_reachable_from_the_cli(tmp_path: Path) -> None:
    _books(tmp_path / "lib", 4)
    with pytest.raises(ValueError, match="directory of documents for data.task=lm, not translation pairs"):
        load_splits(CorpusSource(docs=tmp_path / "lib"))
    parser = argparse.ArgumentParser()
    add_prepare_arguments(parser)
    args = parser.parse_args(["--docs", str(tmp_path / "lib"), "--out", str(tmp_path / "o"), "--task", "lm"])
    assert source_from_args(args).docs == tmp_path / "lib"
    with pytest.raises(ValueError, match="exactly one corpus"):
        CorpusSource(docs=tmp_path / "lib", text=tmp_path / "x")
