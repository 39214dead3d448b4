"""Smoke test of the benchmark suite `mqar` (benchmarks/bench_mqar.py) in quick mode through `benchmarks.run`: the
JSON holds a row per architecture with positive times, rates and ratios. No speed is asserted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.bench_mqar import ARCHS, QUICK, parse_shape
from benchmarks.run import main


def _positive(spread: dict) -> bool:
    return spread["n"] >= 1 and 0 < spread["min"] <= spread["median"] <= spread["max"]


def test_quick_mqar_suite_has_a_row_per_architecture_with_positive_numbers(
    tiny_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    assert main(["--quick", "--suites", "mqar", "--data-dir", str(tiny_data), "--out", str(out)]) == 0
    suite = json.loads((out / "cpu-32-true.json").read_text())["suites"]["mqar"]
    assert suite["shape"] == {**suite["shape"], "d_model": QUICK.d_model, "seq_len": QUICK.seq_len,
                              "rows": QUICK.rows, "filler": "zeros"}  # fmt: skip
    rows = suite["rows"]
    assert [r["arch"] for r in rows] == list(ARCHS) == [
        "lstm", "residual_lstm", "transformer", "lstm_no_cell_residual", "minlstm"]  # fmt: skip
    for r in rows:
        for key in ("pipeline_tokens_per_s", "plain_tokens_per_s", "pipeline_step_s", "plain_step_s", "ratio",
                    "pipeline_flops_per_s"):  # fmt: skip
            assert _positive(r[key]), (r["arch"], key, r[key])
        assert r["rows"] == QUICK.rows and r["tokens_per_batch"] == QUICK.rows * QUICK.seq_len
        assert r["answers_per_batch"] == QUICK.rows * QUICK.n_pairs and r["params"] > 0
        assert r["flops_per_token"] > 0 and len(r["per_repeat"]) == r["repeats"] == QUICK.repeats
        assert r["model"]["d_model"] == QUICK.d_model and r["model"].get("attention") in (None, False)
    assert "### MQAR: one training step per architecture" in (out / "SUMMARY.md").read_text()


def test_a_shape_is_parsed_over_the_default_and_a_bad_one_is_one_line() -> None:
    shape = parse_shape(["d_model=64", "rows=512", "filler=random"])
    assert (shape.d_model, shape.rows, shape.filler, shape.seq_len) == (64, 512, "random", 32)
    for items, says in ((["width=3"], "KEY one of d_model"), (["rows=x"], "rows must be int"),
                        (["n_pairs=9"], "data.mqar.seq_len=32: must be an int >= 4 * n_pairs = 36")):  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(says)) as err:
            parse_shape(items)
        assert "\n" not in str(err.value)
