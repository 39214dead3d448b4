"""`pipeline demo` runs the whole loop (sweep -> records -> fits -> report -> summary, showcase beside it, then the
recall panel), here on the tiny grid (2 sizes, trained long enough to learn), a tiny showcase and the recall grid
cut to two N cells of a few steps, from a directory outside the repository, and ends with fitted laws, drawn
figures and a page that opens with each recall arm's result."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main as cli
from pipeline.demo_summary import FIGURES
from pipeline.training.wandb_files import offline_run_files
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
ARCHS = ("lstm", "residual_lstm", "transformer")
RECALL_ARCHS = ("transformer", "lstm")  # the recall grid's arms, in its order
RECALL_CELLS = ("N1", "N2")


def _tiny_recall_grid(path: Path) -> None:
    """The shipped recall grid at two cells, width 16, 4 steps and a few hundred generated sequences: seconds a run.
    What it measures at that budget is noise; the test checks the panel's plumbing and that the page says what the
    records hold."""
    grid = yaml.safe_load((ROOT / "configs/sweeps/demo-recall.yaml").read_text())
    grid["set"]["data"]["memory"] = {
        "train_examples": 256,
        "valid_examples": 32,
        "test_examples": 8,
        "seed": 0,
    }
    grid["step_budgets"] = [4]
    grid["cells"] = {c: grid["cells"][c] for c in RECALL_CELLS}
    for arm in grid["archs"].values():
        arm["sizes"] = {"d16": {"d_model": 16, "n_layers": 2}}
    path.write_text(yaml.safe_dump(grid))


def test_demo_runs_the_loop_and_writes_one_summary(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = yaml.safe_load((ROOT / "configs/sweeps/tiny.yaml").read_text())
    grid["set"] = {**grid["set"], "data.dir": str(tiny_data), "logging.wandb": True}
    grid["archs"] = {a: {**s, "sizes": dict(list(s["sizes"].items())[:2])} for a, s in grid["archs"].items()}
    # The tiny grid's 1,500 tokens learn nothing but token frequencies (final loss 5.6-6.0 nats against a unigram
    # entropy of 4.52), so nothing would be fitted. 60k tokens (~2.4 passes over the 1,500-pair slice) at these
    # rates end every run at 4.03-4.32 (probed: at 30-40k or at 1e-2 for the recurrent models some runs still sat
    # at 4.5-4.7), 3 validations per run give the compute frontier 3 points per size; ~1 min of training.
    grid["token_budgets"] = [60000]
    grid["evals_per_run"] = 3
    for arch, lr in {"lstm": 3e-2, "residual_lstm": 2e-2, "transformer": 1e-2}.items():
        grid["archs"][arch]["lrs"] = [lr]
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    _tiny_recall_grid(tmp_path / "recall.yaml")
    monkeypatch.chdir(tmp_path)  # not the repo root: shipped config paths must still resolve
    argv = ["demo", "--out", "demo", "--grid", "grid.yaml", "--recall-grid", "recall.yaml", "--n-boot", "10",
            "--showcase", "configs/tiny/base.yaml", "--showcase", "configs/tiny/transformer.yaml",
            f"data.dir={tiny_data}", "logging.wandb=true", "train.bleu_samples=4"]  # fmt: skip
    assert cli(argv) == 0
    out = tmp_path / "demo"
    summary = (out / "summary.md").read_text()
    assert "No scaling law was fitted" not in summary and "## The sweep: 6 runs" in summary
    fit = json.loads((out / "report/fit.json").read_text())
    assert fit["n_runs"] == 6 and sorted(fit["archs"]) == list(ARCHS)
    for arch, a in fit["archs"].items():
        exponent = a["compute_exponents"]["model"]  # L(C) = A C^-alpha on the frontier, with its bootstrap CI
        lo, hi = exponent["ci95"]
        assert all(math.isfinite(x) for x in (exponent["alpha"], lo, hi)) and lo <= hi, arch
        law = a["fits"]["L_C"]
        assert not law["underdetermined"] and law["n_boot_ok"] > 0, arch
        assert all(math.isfinite(v) for v in law["params"].values()), arch
        assert all(math.isfinite(p["loss"]) for p in a["frontier"]) and a["frontier"], arch
        assert f"| {arch} | {a['n_runs']} |" in summary  # the summary's fit table
        assert f"{exponent['alpha']:.3f} [{lo:.3f}, {hi:.3f}]" in summary
    for name, _ in FIGURES:  # every figure the summary shows: drawn, non-empty, linked
        png = out / "report" / f"{name}.png"
        assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"(report/{name}.png)" in summary
    assert (out / "report/report.md").is_file()
    assert "| source (English) | model (French) | reference |" in summary
    assert "## The showcase: transformer trained for 6 steps" in summary
    runs = [p.parent for p in (out / "sweep").glob("*/result.json")]
    assert sorted(p.name for p in runs) == [f"{a}-{s}-60k" for a in ARCHS for s in ("d16", "d32")]
    recall_runs = [p.parent for p in (out / "recall").glob("*/result.json")]
    assert sorted(p.name for p in recall_runs) == sorted(f"{a}-d16-{c}-4steps" for a in RECALL_ARCHS
                                                         for c in RECALL_CELLS)  # fmt: skip
    for run_dir in [*runs, *recall_runs, out / "showcase"]:  # one offline W&B run per model
        assert len(offline_run_files(run_dir)) == 1, run_dir
    _assert_recall_panel(out, summary, recall_runs)


def _assert_recall_panel(out: Path, summary: str, recall_runs: list[Path]) -> None:
    """The figure is drawn and linked, and the page's first lines say, per arm, where its accuracy first fell
    below 0.9 (or that it did not), with the numbers of its records."""
    png = out / "recall-report/capacity_accuracy.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert "(recall-report/capacity_accuracy.png)" in summary and (out / "recall-report/report.md").is_file()
    lines = summary.splitlines()
    assert lines[2].startswith("**Recall panel, measured:**") and "4 steps of" in lines[2], lines[:3]
    head = "\n".join(
        lines[:8]
    )  # the title, the panel's sentence, one bullet per arm: before the sweep's table
    assert summary.index("**Recall panel") < summary.index("## The sweep")
    accuracy: dict[str, dict[int, float]] = {}
    for run_dir in recall_runs:
        record = json.loads((run_dir / "result.json").read_text())
        m = record["answer_metrics"]
        assert m["task"] == "mqar" and m["answers"] == 32 * m["N"] and 0 <= m["accuracy"] <= 1, run_dir
        accuracy.setdefault(record["arch"], {})[m["N"]] = m["accuracy"]
    assert sorted(accuracy) == sorted(RECALL_ARCHS)
    for arch, by_n in accuracy.items():
        bullet = next(line for line in lines[:8] if line.startswith(f"- **{arch}** (d = 16,"))
        below = [n for n in sorted(by_n) if by_n[n] < 0.9]
        if below:
            n = below[0]
            plateau = f" (1/N = {1 / n:.3g})" if n > 1 else ""
            assert f"recall fell below 0.9 at N = {n}: accuracy {by_n[n]:.3f}{plateau}." in bullet
        else:
            assert "recall did not fall below 0.9 within the grid (N ≤ 2)" in bullet
        assert ", ".join(f"{n}: {a:.3f}" for n, a in sorted(by_n.items())) in bullet
    assert head.count("- **") == len(RECALL_ARCHS)
