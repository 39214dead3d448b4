"""`train.compile=auto`'s table (`AUTO_MIN_STEPS` in pipeline/training/compile.py) from a roofline run.

    python -m benchmarks.auto_compile benchmarks/results/speed-check/run/cpu-32-true.json            # print it
    python -m benchmarks.auto_compile benchmarks/results/speed-check/run/cpu-32-true.json --write    # and set it

The rule, per model (`compile.model_label`: the arch, and its recurrence where that makes it another program): it
enters only if it compiled (no fallback, not skipped, not capped) at every size the run measured it and its
compiled step was faster at each (median speedup above `--min-speedup`, default 1; the table has one entry a
model, so a size where compiling slows it keeps it out: auto would slow those runs). Its steps are twice the
largest `break_even_steps` over those sizes (compile seconds / seconds saved a step: a run at least that long wins
the compile time back twice over), or of `break_even_warm_steps` with `--warm` (the compile once inductor's cache
holds the model's code, as a sweep's runs after its first pay). Where a run did not measure a model, it stays out:
auto trains it eager.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

COMPILE_PY = Path(__file__).resolve().parent.parent / "pipeline" / "training" / "compile.py"
TABLE = re.compile(r"AUTO_MIN_STEPS: dict\[tuple\[str, str\], int\] = \{[^}]*\}\n")


def model_label(model_cfg: dict[str, Any]) -> str:
    from pipeline.training.compile import model_label as label

    return label(model_cfg)


def auto_min_steps(roofline: dict[str, Any], device_type: str, warm: bool = False,
                   min_speedup: float = 1.0) -> tuple[dict[tuple[str, str], int], list[str]]:  # fmt: skip
    """(the table's entries for `device_type`, one line a model saying why it is in or out)."""
    by_label: dict[str, list[dict[str, Any]]] = {}
    for row in roofline["rows"]:
        by_label.setdefault(model_label(row["model"]), []).append(row)
    table: dict[tuple[str, str], int] = {}
    why = []
    key = "break_even_warm_steps" if warm else "break_even_steps"
    for label, rows in by_label.items():
        out = _reason_out(rows, key, min_speedup)
        sizes = ", ".join(f"{r['size']} {r['speedup']['median']:.2f}x" for r in rows if r.get("speedup"))
        if out:
            why.append(f"{label}: eager ({out})")
            continue
        steps = 2 * max(int(r[key]) for r in rows)
        table[(device_type, label)] = steps
        why.append(f"{label}: compile from {steps} steps (2 x the largest {key}; speedups {sizes})")
    return table, why


def _reason_out(rows: list[dict[str, Any]], key: str, min_speedup: float) -> str | None:
    for r in rows:
        if r.get("not_compiled"):
            return f"{r['size']}: {r['not_compiled']}"
        if r.get("fallback"):
            return f"{r['size']}: fell back to eager: {r['fallback']}"
        if r["speedup"]["median"] <= min_speedup:
            return f"{r['size']}: compiled step {r['speedup']['median']:.2f}x eager's"
        if r.get(key) is None:
            return f"{r['size']}: no {key} measured"
    return None


def table_source(table: dict[tuple[str, str], int]) -> str:
    """The assignment as compile.py holds it (multi-line with a trailing comma, so ruff format keeps it)."""
    if not table:
        return "AUTO_MIN_STEPS: dict[tuple[str, str], int] = {}\n"
    lines = "".join(
        f"    ({dev!r}, {label!r}): {steps},\n".replace("'", '"') for (dev, label), steps in table.items()
    )
    return "AUTO_MIN_STEPS: dict[tuple[str, str], int] = {\n" + lines + "}\n"


def write_table(table: dict[tuple[str, str], int], source: str, path: Path = COMPILE_PY) -> None:
    """Replace the assignment in compile.py, with a comment naming the measurement it came from."""
    text = path.read_text()
    if not TABLE.search(text):
        raise SystemExit(f"{path}: no `AUTO_MIN_STEPS: dict[tuple[str, str], int] = {{...}}` to replace")
    text = re.sub(r"# Measured by: .*\n(?=AUTO_MIN_STEPS)", "", text)
    path.write_text(TABLE.sub(lambda _: f"# Measured by: {source}\n" + table_source(table), text, count=1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.auto_compile", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("result", help="a benchmarks.run JSON holding the roofline suite")
    p.add_argument(
        "--warm", action="store_true", help="from break_even_warm_steps (--roofline-recompile runs)"
    )
    p.add_argument("--min-speedup", type=float, default=1.0, help="a model enters above this median speedup")
    p.add_argument("--write", action="store_true", help=f"set the table in {COMPILE_PY.name}")
    args = p.parse_args(argv)
    result = json.loads(Path(args.result).read_text())
    if "roofline" not in result.get("suites", {}):
        print(f"error: {args.result}: no roofline suite in it", file=sys.stderr)
        return 2
    device = result["machine"]["device"]
    device_type = "cuda" if device == "cuda" else "cpu"
    table, why = auto_min_steps(result["suites"]["roofline"], device_type, args.warm, args.min_speedup)
    print("\n".join(why))
    print(table_source(table), end="")
    if args.write:  # other device types' entries stay
        from pipeline.training.compile import AUTO_MIN_STEPS

        merged = {k: v for k, v in AUTO_MIN_STEPS.items() if k[0] != device_type} | table
        write_table(
            merged,
            f"python -m benchmarks.auto_compile {Path(args.result).as_posix()} ({result.get('started', '?')})",
        )
        print(f"wrote {COMPILE_PY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
