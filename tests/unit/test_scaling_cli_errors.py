"""`pipeline scaling report|fit` on damaged sweep files and bad flags: one line naming the file or flag, exit 2.

Each case was a misleading line or a traceback before: a binary result.json gave the UTF-8 decode error without
the file's name; a garbage or empty plan.json, and --n-boot -1, ended in "every run learned nothing".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.scaling.records.run_record import RunRecord, save_record
from pipeline.scaling.records.sweep_dir import PLAN_FILE


def _sweep(root: Path) -> Path:
    """Four LSTM runs with finite losses: enough records for a sweep to be read."""
    for n, d in ((2e4, 1e5), (2e4, 4e5), (8e4, 1e5), (8e4, 4e5)):
        loss = 1.5 + 80 / n**0.3 + 60 / d**0.28
        name = f"lstm-{int(n)}-{int(d)}"
        record = RunRecord(
            run=name, arch="lstm", params=int(2 * n), non_embedding_params=int(n), flops_per_token=6 * n,
            tokens=int(d), compute=6 * n * int(d), epochs=d / 1e6, final_valid_loss=loss, best_valid_loss=loss,
            loss_by_position=[loss] * 4, wall_time_s=1.0, config={},
        )  # fmt: skip
        save_record(root / name / "result.json", record)
    return root


def _error_line(capsys: pytest.CaptureFixture[str], argv: list[str], command: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pipeline scaling {command}: error: "), err
    return err[0]


@pytest.mark.parametrize("command", ["report", "fit"])
def test_a_binary_result_json_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    sweep = _sweep(tmp_path / "sweep")
    bad = sweep / "lstm-20000-100000" / "result.json"
    bad.write_bytes(b"\xff\xfe\x00\x81binary\x00")
    line = _error_line(capsys, ["scaling", command, str(sweep), "--n-boot", "20"], command)
    assert str(bad) in line and "UTF-8" in line


@pytest.mark.parametrize("content", [b"", b"not json {", b"[1, 2, 3]", b'{"runs": 5}', b"\xff\xfe"])
@pytest.mark.parametrize("command", ["report", "fit"])
def test_a_damaged_plan_json_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, content: bytes
) -> None:
    sweep = _sweep(tmp_path / "sweep")
    (sweep / PLAN_FILE).write_bytes(content)
    line = _error_line(capsys, ["scaling", command, str(sweep), "--n-boot", "20"], command)
    assert str(sweep / PLAN_FILE) in line and "learned nothing" not in line


@pytest.mark.parametrize("value", ["-1", "5"])
@pytest.mark.parametrize("command", ["report", "fit"])
def test_too_few_bootstrap_resamples_name_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, value: str
) -> None:
    sweep = _sweep(tmp_path / "sweep")
    line = _error_line(capsys, ["scaling", command, str(sweep), "--n-boot", value], command)
    assert "--n-boot" in line and value in line and "learned nothing" not in line
