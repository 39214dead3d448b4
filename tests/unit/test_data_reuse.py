"""A run reuses a prepared `data.dir` only when its manifest records the run config's preparation keys: a key that
differs (data.limit, data.vocab_size, data.max_len, data.corpus, data.task...) stops the run with one line naming it,
both values and how to rebuild, never a silent reuse of other data."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.data.manifest import MANIFEST
from pipeline.training.run_data import prepare_run_data
from tests.conftest import ROOT, TINY
from tests.unit.data_fixtures import write_parallel

pytestmark = pytest.mark.timeout(120)


def data_config(data_dir: Path, corpus: str, *extra: str):
    overrides = [f"data.dir={data_dir}", f"data.corpus={corpus}", "data.vocab_size=300", "data.max_len=48",
                 "data.limit=60", *extra]  # fmt: skip
    return load_config([*TINY, ROOT / "configs/tiny/lstm.yaml"], overrides).data


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("reuse")
    src, tgt = write_parallel(root, n=200)
    corpus = f"parallel:{src}|{tgt}"
    prepare_run_data(data_config(root / "data", corpus))
    return root / "data", corpus


def test_the_same_keys_reuse_the_prepared_dir(prepared: tuple[Path, str]) -> None:
    data_dir, corpus = prepared
    stamp = (data_dir / MANIFEST).stat().st_mtime_ns
    manifest = prepare_run_data(data_config(data_dir, corpus))
    assert manifest["args"]["limit"] == 60 and (data_dir / MANIFEST).stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("override", "found", "asked"),
    [
        ("data.limit=30", "data.limit=60", "data.limit=30"),
        ("data.limit=0", "data.limit=60", "data.limit=0 (all pairs)"),
        ("data.vocab_size=400", "data.vocab_size=300", "data.vocab_size=400"),
        ("data.max_len=40", "data.max_len=48", "data.max_len=40"),
        ("data.corpus=bible:4-l", "data.corpus=parallel:", "data.corpus=bible:4-l"),
    ],
)
def test_a_different_preparation_key_is_one_line_naming_it(
    prepared: tuple[Path, str], override: str, found: str, asked: str
) -> None:
    data_dir, corpus = prepared
    stamp = (data_dir / MANIFEST).stat().st_mtime_ns
    with pytest.raises(ValueError) as info:
        prepare_run_data(data_config(data_dir, corpus, override))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{data_dir} was prepared with {found}")
    assert f"not the {asked} asked for" in message
    assert f"delete {data_dir}" in message and "point data.dir elsewhere" in message
    assert (data_dir / MANIFEST).stat().st_mtime_ns == stamp  # nothing rebuilt


def test_every_differing_key_is_named(prepared: tuple[Path, str]) -> None:
    data_dir, corpus = prepared
    with pytest.raises(ValueError, match=r"with data\.vocab_size=300, data\.limit=60, not the data\.vocab_size=512, "
                                         r"data\.limit=10 asked for"):  # fmt: skip
        prepare_run_data(data_config(data_dir, corpus, "data.vocab_size=512", "data.limit=10"))
