"""LM data for the context study: BOS before every LM window, the position table covers it, old-format data
is refused with how to rebuild it, and every held-out window names its document, book and chapter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, load_config
from pipeline.data.manifest import MANIFEST
from pipeline.data.prepare.build import prepare
from pipeline.data.sources.corpus import CorpusSource
from pipeline.data.sources.lm_clusters import read_window_clusters, token_labels, window_clusters
from pipeline.data.stream.verify import verify_prepared
from pipeline.training.run_model import run_model
from tests.conftest import ROOT, TINY

NL = 9  # the newline token of the toy documents below


def test_windows_name_the_majority_document_book_and_chapter_across_translations() -> None:
    # two translations (t4, tk) of book 8 with two chapters each, then book 32: windows of 4 tokens
    docs = ["t4b08", "tkb08", "t4b32"]
    tokens = [np.array([5, 5, NL, 6, 6, 6]), np.array([7, NL, 8, 8, 8]), np.array([4, 4, 4, 4, 4])]
    labels = token_labels(docs, tokens, NL)
    assert labels["chapter"][:7].tolist() == ["b08c001"] * 3 + ["b08c002"] * 4  # the newline ends chapter 1
    got = window_clusters(labels, width=4, n_windows=4)
    assert got["document"] == ["t4b08", "t4b08", "tkb08", "t4b32"]
    assert got["book"] == ["b08", "b08", "b08", "b32"]  # both translations of Ruth: one cluster
    assert got["chapter"] == ["b08c001", "b08c002", "b08c002", "b32c001"]
    # text corpora have no books: every unit is the document
    text = token_labels(["validblock"], [np.array([1, 2, NL, 3])], NL)
    assert set(text["chapter"]) == set(text["book"]) == {"validblock"}


def test_old_format_lm_data_is_refused_with_how_to_rebuild(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("\n".join(f"line {i} of some text with words" for i in range(400)) + "\n")
    data = tmp_path / "lm"
    manifest = prepare(CorpusSource(text=text, valid_frac=0.1, test_frac=0.1), data, vocab_size=300, task="lm",
                       context=16)  # fmt: skip
    assert len(read_window_clusters(manifest, "valid")) == manifest["splits"]["valid"]["samples"]
    old = json.loads((data / MANIFEST).read_text())
    old["format_version"] = 2  # the last LM format without BOS
    (data / MANIFEST).write_text(json.dumps(old))
    with pytest.raises(ValueError, match=rf"format_version=2.*rebuild it with `pipeline data "
                                         rf"prepare --out {data} --force`") as err:  # fmt: skip
        verify_prepared(data)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="no window clusters for split 'valid'.*--force"):
        read_window_clusters({"corpus": "x", "splits": {}}, "valid")


def test_the_transformer_position_table_covers_bos_and_the_context(tmp_path: Path) -> None:
    files = [*TINY, ROOT / "configs/tiny/lm.yaml"]
    with pytest.raises(ConfigError, match=r"model\.max_len=64 is shorter than data\.context=64 \(\+ BOS\)"):
        load_config(files, ["data.context=64", "model.max_len=64", f"run_dir={tmp_path}"])
    cfg = load_config(files, ["data.context=64", "model.max_len=65", f"run_dir={tmp_path}"])
    model = run_model(cfg)
    assert model.lm_forward(torch.ones(2, 65, dtype=torch.long)).shape[:2] == (2, 65)


def test_shipped_context_configs_leave_room_for_bos() -> None:
    for path in sorted((ROOT / "configs/sweeps").glob("context-*.yaml")):
        text = path.read_text()
        for size in ("max_len: 512}", "max_len: 1024}", "max_len: 4096}"):
            assert f"model: {{dropout: 0.0, {size}" not in text, f"{path.name}: model.max_len = data.context"


def test_text_data_of_format_3_is_still_read_format_4_changed_memory_tasks_only(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("\n".join(f"line {i} of some text with words" for i in range(400)) + "\n")
    data = tmp_path / "lm"
    prepare(
        CorpusSource(text=text, valid_frac=0.1, test_frac=0.1), data, vocab_size=300, task="lm", context=16
    )
    manifest = json.loads((data / MANIFEST).read_text())
    manifest["format_version"] = 3
    (data / MANIFEST).write_text(json.dumps(manifest))
    verify_prepared(data)  # no rebuild asked of a text data set whose layout did not change
