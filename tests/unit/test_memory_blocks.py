"""Memory-task shards store blocks of sequences (one tar sample holds up to BLOCK_ROWS of them), which the loader
cuts back into sequences: every reader slot layout still sees each generated sequence exactly once, old
one-sequence-a-sample data is refused with how to rebuild it, and a block whose members disagree is an error."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.manifest import FORMAT_VERSION, MANIFEST
from pipeline.data.memory_spec import BLOCK_ROWS, memory_spec
from pipeline.data.prepare.memory_shards import ensure_memory_prepared, generate, prepare_memory
from pipeline.data.stream.loader import build_loader
from pipeline.data.stream.memory_batches import block_rows

# 700 train sequences in shards of 300: blocks of 256 + 44 rows, then a shard of 100 (one short block)
SPEC = memory_spec("copy", alphabet_size=5, max_len=6, eval_max_len=8, train_examples=700, valid_examples=300,
                   test_examples=50)  # fmt: skip
SHARD_SIZE = 300


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("blocks") / "copy"
    prepare_memory(out, SPEC, shard_size=SHARD_SIZE)
    return out


def _expected(split: str) -> dict[str, tuple]:
    """key -> (tokens, answers, length meta) of every generated sequence, cut to its `$x|x.`."""
    ex = generate(SPEC, split)
    out = {}
    for i in range(len(ex.tokens)):
        width = 2 * int(ex.meta["length"][i].max()) + 3
        answers = np.where(ex.mask[i], ex.targets[i], 0)[:width]
        out[f"{split}{i:08d}"] = (
            ex.tokens[i, :width].tolist(),
            answers.tolist(),
            ex.meta["length"][i, :width].tolist(),
        )
    return out


def test_a_shard_holds_blocks_not_one_sample_a_sequence(data: Path) -> None:
    manifest = json.loads((data / MANIFEST).read_text())
    shards = manifest["splits"]["train"]["shards"]
    assert [s["samples"] for s in shards] == [300, 300, 100]  # sequences, as the loader counts them
    with tarfile.open(data / shards[0]["path"]) as tar:
        names = tar.getnames()
    members = {"keys.txt", "len.i32", "tgt.i32", "ans.i32", "length.i32", "offset.i32"}
    assert len(names) == 2 * len(members) and {n.split(".", 1)[1] for n in names} == members
    assert BLOCK_ROWS == 256 and sorted({n.split(".")[0] for n in names}) == [
        "train00000000",
        "train00000256",
    ]


@pytest.mark.parametrize(("split", "num_workers", "world_size"), [("train", 2, 1), ("train", 0, 2), ("train", 2, 2),
                                                                  ("valid", 2, 2)])  # fmt: skip
def test_every_slot_layout_reads_each_generated_sequence_once(
    data: Path, split: str, num_workers: int, world_size: int
) -> None:
    expected = _expected(split)
    for epoch in (0, 1):
        seen: Counter[str] = Counter()
        for rank in range(world_size):
            loader = build_loader(data, split, batch_tokens=19 * 8, bucket_size=64, seed=2, epoch=epoch, rank=rank,
                                  world_size=world_size, num_workers=num_workers)  # fmt: skip
            for batch in loader:
                for r, key in enumerate(batch["keys"]):
                    tokens, answers, length = expected[key]
                    width = len(tokens)
                    assert batch["tgt_in"][r, :width].tolist() == tokens
                    assert batch["tgt_out"][r, :width].tolist() == answers
                    assert batch["meta"]["length"][r, :width].tolist() == length
                    assert (batch["tgt_in"][r, width:] == 0).all()
                    seen[key] += 1
        assert seen == Counter(expected.keys())  # every sequence once, none invented, in every epoch


def test_old_format_memory_data_is_refused_with_how_to_rebuild(tmp_path: Path) -> None:
    spec = memory_spec("copy", alphabet_size=4, max_len=4, eval_max_len=4, train_examples=30, valid_examples=9,
                       test_examples=9)  # fmt: skip
    out = tmp_path / "c"
    prepare_memory(out, spec)
    old = json.loads((out / MANIFEST).read_text())
    old["format_version"] = FORMAT_VERSION - 1
    (out / MANIFEST).write_text(json.dumps(old))
    with pytest.raises(ValueError) as err:
        ensure_memory_prepared(out, spec)
    said = str(err.value)
    assert (
        f"format_version={FORMAT_VERSION - 1}, this code reads {FORMAT_VERSION}" in said and "\n" not in said
    )
    assert f"pipeline data prepare --out {out} --force" in said and "--task copy" in said
    assert prepare_memory(out, spec)["format_version"] == FORMAT_VERSION  # the command rebuilds it in place


def test_a_block_whose_members_disagree_is_an_error_naming_it() -> None:
    raw = {"__key__": "train00000000", "keys.txt": "train00000000\ntrain00000001",
           "len.i32": np.array([3, 2]), "tgt.i32": np.arange(5), "ans.i32": np.arange(5),
           "length.i32": np.arange(5), "offset.i32": np.arange(5)}  # fmt: skip
    rows = list(block_rows(raw, "copy"))
    assert [(k, t.tolist(), e["ans"].tolist()) for k, t, e in rows] == [
        ("train00000000", [0, 1, 2], [0, 1, 2]),
        ("train00000001", [3, 4], [3, 4]),
    ]
    with pytest.raises(
        ValueError, match=r"block train00000000: 2 keys, 2 lengths summing to 5, members of \[4, 5\]"
    ):
        list(block_rows({**raw, "ans.i32": np.arange(4)}, "copy"))
