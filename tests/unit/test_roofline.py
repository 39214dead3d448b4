"""The roofline suite (benchmarks/roofline.py) on its quick sizes: a GEMM limit, every row's eager and compiled
rates as shares of it, the profile tables, and the SUMMARY.md section. Compiled with dynamo's "eager" backend
(dynamo tracing, no inductor code generation), so the test costs seconds; inductor itself is covered by
tests/unit/test_compile.py."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmarks import roofline
from benchmarks.common import BenchSettings
from benchmarks.roofline_summary import roofline_section


def test_gemm_limit_is_the_best_size_and_positive() -> None:
    g = roofline.gemm_limit(torch.device("cpu"), (32, 64), min_s=0.01)
    assert set(g["flops_per_s"]) == {"32", "64"} and g["limit"] == max(g["flops_per_s"].values()) > 1e6


def test_quick_roofline_rows_and_summary(tiny_data: Path, tmp_path: Path) -> None:
    manifest = json.loads((tiny_data / "manifest.json").read_text())
    settings = BenchSettings(quick=True, data_dir=str(tiny_data))
    data = {"vocab_size": manifest["vocab_size"], "max_len": manifest["max_len"]}
    result = roofline.run(settings, data, tmp_path, log=lambda _: None, backend="eager")
    rows = result["rows"]
    assert {(r["size"], r["arch"]) for r in rows} == {
        (size, arch) for size in ("tiny", "recall-d64-L64") for arch in roofline.QUICK["archs"]
    }
    for r in rows:
        assert r["compiled"] and r["fallback"] is None
        for mode in ("eager", "compiled"):
            rate = r[mode]["flops_per_s"]["median"]
            assert r[mode]["tokens_per_s"]["median"] > 0 and rate > 0
            assert abs(r[mode]["of_limit"]["median"] - rate / result["gemm"]["limit"]) < 1e-12
        assert r["step_vs_lstm"]["eager"] > 0 and r["speedup"]["median"] > 0
    lm = next(r for r in rows if r["size"].startswith("recall"))
    assert lm["model"]["task"] == "lm" and lm["model"]["d_model"] == 64
    assert next(r for r in rows if r["arch"] == "lstm")["step_vs_lstm"] == {"eager": 1.0, "compiled": 1.0}
    profile = (tmp_path / result["profile"]).read_text()
    assert profile.count("## ") == 2 * len(rows) and "aten::" in profile
    scan, *adamw = result["fixes"]
    assert (
        scan["model"]["arch"] == "minlstm"
        and scan["before_step_s"]["median"] > 0 < scan["after_step_s"]["median"]
    )
    assert [f["arch"] for f in adamw] == list(roofline.QUICK["archs"])
    assert all(f["before_ms"] > 0 < f["after_ms"] for f in adamw)
    section = "\n".join(roofline_section({"suites": {"roofline": result}}))
    assert "GEMM limit" in section and section.count("| tiny |") == len(roofline.QUICK["archs"])
    assert "minLSTM scan" in section and "fused AdamW" in section
