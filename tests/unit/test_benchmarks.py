"""Smoke test of `python -m benchmarks.run --quick`: the JSON holds every suite's fields with positive numbers.

No speed is asserted (timings belong to the benchmark itself, not to a test on a shared machine).
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.run import main


def _positive(spread: dict) -> bool:
    return spread["n"] >= 1 and 0 < spread["min"] <= spread["median"] <= spread["max"]


def test_quick_benchmark_writes_json_and_summary(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert main(["--quick", "--data-dir", str(tiny_data), "--out", str(out)]) == 0

    result = json.loads((out / "cpu-32-true.json").read_text())
    machine = result["machine"]
    assert machine["torch_threads"] == 1 and machine["cpu_cores"] >= 1 and machine["torch"]
    assert result["command"].startswith("python -m benchmarks.run --quick")

    rows = result["suites"]["throughput"]["rows"]
    assert {r["arch"] for r in rows} == {"lstm", "residual_lstm", "transformer"}
    for r in rows:
        for key in (
            "trainer_tokens_per_s",
            "plain_tokens_per_s",
            "ratio",
            "wall_ratio",
            "trainer_flops_per_s",
        ):
            assert _positive(r[key]), (r["arch"], key, r[key])
        assert r["params"] > 0 and r["mfu"] is None and r["peak_flops_per_s"] is None  # CPU: no peak, no MFU
        # CPU: paired steps, the plain step alternating between the start and the end of the trainer's step
        assert r["method"] == "paired steps" and len(r["per_repeat"]) == r["repeats"] == 2
        assert {p["plain_step_at"] for p in r["per_repeat"]} == {"start", "end"}

    seq = result["suites"]["seq_len"]["rows"]
    assert {(r["arch"], r["seq_len"]) for r in seq} == {
        (a, n) for a in ("lstm", "transformer") for n in (16, 32, 64)
    }
    tokens = result["suites"]["seq_len"]["tokens_per_batch"]
    for r in seq:
        assert _positive(r["tokens_per_s"]) and r["rows"] * r["seq_len"] == tokens

    (loader,) = result["suites"]["loader"]["rows"]
    assert _positive(loader["loader_tokens_per_s"]) and loader["headroom"] > 0

    (fix,) = {r["fix"] for r in result["suites"]["fixes"]["rows"]}
    for r in result["suites"]["fixes"]["rows"]:
        assert r["before_tokens_per_s"] > 0 and r["after_tokens_per_s"] > 0 and r["loss_ms"]["after"] > 0

    summary = (out / "SUMMARY.md").read_text()
    assert (
        "No GPU was available" in summary
        and "trainer/plain" in summary
        and "torch.set_num_threads(1)" in summary
    )
