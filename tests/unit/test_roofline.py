"""The roofline suite (benchmarks/roofline.py) on its quick sizes: a GEMM limit, every row's eager and compiled
rates as shares of it, the profile tables, and the SUMMARY.md section; and the options that bound a run (sizes,
architectures, which ones compile, a cap on one compile) with its JSON written after every row. Compiled with
dynamo's "eager" backend (dynamo tracing, no inductor code generation), so the tests cost seconds; inductor itself
is covered by tests/unit/test_compile.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks import roofline
from benchmarks.common import BenchSettings
from benchmarks.roofline import RooflineOptions
from benchmarks.roofline_summary import roofline_section
from benchmarks.run import main


def _settings_data(tiny_data: Path) -> tuple[BenchSettings, dict[str, Any]]:
    manifest = json.loads((tiny_data / "manifest.json").read_text())
    settings = BenchSettings(quick=True, data_dir=str(tiny_data))
    return settings, {"vocab_size": manifest["vocab_size"], "max_len": manifest["max_len"]}


def test_gemm_limit_is_the_best_size_and_positive() -> None:
    g = roofline.gemm_limit(torch.device("cpu"), (32, 64), min_s=0.01)
    assert set(g["flops_per_s"]) == {"32", "64"} and g["limit"] == max(g["flops_per_s"].values()) > 1e6


def test_quick_roofline_rows_and_summary(tiny_data: Path, tmp_path: Path) -> None:
    settings, data = _settings_data(tiny_data)
    updates: list[int] = []
    result = roofline.run(settings, data, tmp_path, RooflineOptions(backend="eager"), log=lambda _: None,
                          on_update=lambda part: updates.append(len(part["rows"])))  # fmt: skip
    rows = result["rows"]
    sizes = ("tiny", "recall-d64-L64", "mqar-d16-L16")
    assert {(r["size"], r["arch"]) for r in rows} == {
        (size, arch) for size in sizes for arch in roofline.QUICK["archs"]
    }
    assert updates == list(range(1, len(rows) + 1)) and result["complete"]
    assert 0 < result["gemm"]["op_cost_s"] < 1e-3
    for r in rows:
        assert r["is_compiled"] and r["fallback"] is None and r["not_compiled"] is None
        for mode in ("eager", "compiled"):
            rate = r[mode]["flops_per_s"]["median"]
            assert r[mode]["tokens_per_s"]["median"] > 0 and rate > 0
            assert abs(r[mode]["of_limit"]["median"] - rate / result["gemm"]["limit"]) < 1e-12
            assert r[mode]["ops_per_step"] > 10  # a training step launches many ops
        assert r["step_vs_lstm"]["eager"] > 0 and r["speedup"]["median"] > 0
        step_gemm = r["shape_limits"]["step"]
        assert step_gemm["shape"] == [r["rows"], r["model"]["d_model"], 4 * r["model"]["d_model"]]
        assert step_gemm["flops_per_s"] > 0
    lm = next(r for r in rows if r["size"].startswith("recall"))
    assert lm["model"]["task"] == "lm" and lm["model"]["d_model"] == 64
    mqar = next(r for r in rows if r["size"].startswith("mqar"))
    assert mqar["model"]["d_model"] == 16 and mqar["rows"] == 16
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


def test_sizes_and_archs_bound_the_run_and_hand_written_loops_are_timed_eager(
    tiny_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    argv = ["--quick", "--suites", "roofline", "--data-dir", str(tiny_data), "--out", str(out),
            "--roofline-sizes", "tiny", "--roofline-archs", "lstm", "lstm_no_cell_residual",
            "--roofline-backend", "eager", "--roofline-no-fixes", "--roofline-recompile"]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((out / "cpu-32-true.json").read_text())
    suite = saved["suites"]["roofline"]
    assert saved["complete"] and suite["complete"] and suite["fixes"] == []
    assert [(r["size"], r["arch"]) for r in suite["rows"]] == [
        ("tiny", "lstm"),
        ("tiny", "lstm_no_cell_residual"),
    ]
    lstm, hand = suite["rows"]
    assert (
        lstm["recompile_s"] >= 0 and "recompile_s" not in hand
    )  # a warm-cache compile of the compiled one only
    assert not hand["is_compiled"] and hand["compiled"] is None and hand["speedup"] is None
    assert "not compiled" in hand["not_compiled"] and "632 s" in hand["not_compiled"]
    assert hand["eager"]["tokens_per_s"]["median"] > 0 and hand["step_vs_lstm"]["compiled"] is None
    assert "Eager only:" in (out / "SUMMARY.md").read_text()
    # asked for by name, it compiles
    assert (
        main(
            [
                *argv,
                "--roofline-archs",
                "lstm_no_cell_residual",
                "--roofline-compile",
                "lstm_no_cell_residual",
            ]
        )
        == 0
    )
    (row,) = json.loads((out / "cpu-32-true.json").read_text())["suites"]["roofline"]["rows"]
    assert row["is_compiled"] and row["not_compiled"] is None and row["speedup"]["median"] > 0


def test_a_compile_past_the_cap_is_recorded_and_the_next_arch_still_compiles(
    tiny_data: Path, tmp_path: Path
) -> None:
    settings, data = _settings_data(tiny_data)
    slow = {"lstm": True}

    def backend(gm: torch.fx.GraphModule, inputs: list) -> Any:
        if slow["lstm"]:
            time.sleep(600)  # a compile that never ends within the cap
        return gm.forward

    def log(line: str) -> None:
        if "lstm" in line:
            slow["lstm"] = False  # only the first architecture's compile is slow

    # 10 s: the tiny Transformer's dynamo-only compile took 2.7 s here at load ~6
    options = RooflineOptions(sizes=("tiny",), compile_cap_s=10.0, fixes=False, backend=backend)
    started = time.perf_counter()
    rows = roofline.run(settings, data, tmp_path, options, log=log)["rows"]
    assert time.perf_counter() - started < 300
    capped, other = rows
    assert capped["arch"] == "lstm" and capped["compiled"] is None and "10 s cap" in capped["not_compiled"]
    assert other["arch"] == "transformer" and other["is_compiled"] and other["speedup"]["median"] > 0


def test_a_run_stopped_after_a_row_keeps_that_row_on_disk(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured = roofline.bench_arch

    def stop_at_transformer(settings: BenchSettings, point: Any, arch: str, *rest: Any) -> Any:
        if arch == "transformer":
            raise KeyboardInterrupt  # as a run killed mid-way
        return measured(settings, point, arch, *rest)

    monkeypatch.setattr(roofline, "bench_arch", stop_at_transformer)
    out = tmp_path / "bench"
    with pytest.raises(KeyboardInterrupt):
        main(["--quick", "--suites", "roofline", "--data-dir", str(tiny_data), "--out", str(out),
              "--roofline-sizes", "tiny", "--roofline-backend", "eager"])  # fmt: skip
    saved = json.loads((out / "cpu-32-true.json").read_text())
    assert not saved["complete"] and not saved["suites"]["roofline"]["complete"]
    assert [r["arch"] for r in saved["suites"]["roofline"]["rows"]] == ["lstm"]
