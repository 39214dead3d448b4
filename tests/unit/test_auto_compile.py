"""`train.compile=auto`'s table from a roofline run (benchmarks/auto_compile.py): who enters, with how many steps,
and the table written into a copy of pipeline/training/compile.py, read back as the module would read it."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path
from typing import Any

from benchmarks.auto_compile import COMPILE_PY, auto_min_steps, write_table


def row(arch: str, size: str, speedup: float | None, break_even: int | None, **extra: Any) -> dict[str, Any]:
    return {"arch": arch, "size": size, "model": {"arch": arch, **extra.pop("model", {})},
            "speedup": None if speedup is None else {"median": speedup}, "break_even_steps": break_even,
            "not_compiled": None, "fallback": None, **extra}  # fmt: skip


ROOFLINE = {
    "rows": [
        row("transformer", "tiny", 1.2, 3000, break_even_warm_steps=400),
        row("transformer", "mqar-d32-L32", 1.1, 5000, break_even_warm_steps=900),
        row("lstm", "tiny", 0.95, None),
        row("minlstm", "tiny", 1.3, 800),
        row("minlstm", "mqar-d32-L32", 0.9, None),  # slower at one size: kept out
        row("lstm_no_cell_residual", "tiny", None, None, not_compiled="not compiled: 632 s"),
        row("lstm_newton", "tiny", 1.5, 100, model={"arch": "lstm", "recurrence": "newton"}),
    ]
}


def test_a_model_enters_only_where_compiling_paid_at_every_size() -> None:
    table, why = auto_min_steps(ROOFLINE, "cpu")
    # twice the largest break-even over its sizes; newton is its own entry, named by its recurrence
    assert table == {("cpu", "transformer"): 10000, ("cpu", "lstm (recurrence=newton)"): 200}
    assert any(line.startswith("minlstm: eager (mqar-d32-L32: compiled step 0.90x") for line in why)
    assert any(line.startswith("lstm_no_cell_residual: eager (tiny: not compiled: 632 s") for line in why)
    warm, _ = auto_min_steps(ROOFLINE, "cpu", warm=True)
    assert warm == {("cpu", "transformer"): 1800}  # newton has no warm figure: out


def test_the_table_is_written_into_compile_py_and_reads_back(tmp_path: Path) -> None:
    target = tmp_path / "compile.py"
    shutil.copy(COMPILE_PY, target)
    table = {("cpu", "transformer"): 10000, ("cuda", "lstm (recurrence=newton)"): 200}
    for _ in range(2):  # writing again replaces, not adds
        write_table(table, "a test", target)
    text = target.read_text()
    assert text.count("# Measured by: a test\n") == 1 and text.count("AUTO_MIN_STEPS: dict") == 1
    (assign,) = [
        n for n in ast.parse(text).body if isinstance(n, ast.AnnAssign) and n.target.id == "AUTO_MIN_STEPS"
    ]
    assert ast.literal_eval(assign.value) == table
    write_table({}, "empty", target)
    assert "AUTO_MIN_STEPS: dict[tuple[str, str], int] = {}\n" in target.read_text()
