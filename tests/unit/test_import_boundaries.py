"""The package layers, checked from the source: no import of a forbidden library, no import upward.

Layers, bottom to top (a module may import its own layer's package and any layer below, never one above):
  0  pipeline.models, pipeline.data   (neither imports the other)
  1  pipeline.config (checks model keys against the model registry), pipeline.cost (costs the models' structure)
  2  pipeline.scaling (fits records; draws the time axis with the cost model)
  3  pipeline.training
  4  pipeline.slurm, pipeline.sweep
  5  pipeline.cli, pipeline.demo, pipeline.export, pipeline.__main__   (may import each other)
The leaves never import Lightning, DeepSpeed, wandb or SLURM code. Imports inside functions count too: a lazy
import is still a dependency. `pipeline.slurm` may read `pipeline.training.logged_metrics` (a CSV reader), and `pipeline.sweep` may submit
through `pipeline.slurm`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "pipeline"
LAYER = {
    "pipeline.models": 0,
    "pipeline.data": 0,
    "pipeline.config": 1,
    "pipeline.cost": 1,
    "pipeline.scaling": 2,
    "pipeline.training": 3,
    "pipeline.slurm": 4,
    "pipeline.sweep": 4,
    "pipeline.cli": 5,
    "pipeline.demo": 5,
    "pipeline.demo_summary": 5,
    "pipeline.export": 5,
    "pipeline.__main__": 5,
    "pipeline": 5,
}
SAME_PART = {
    "pipeline.config_checks": "pipeline.config",
    "pipeline.config_identity": "pipeline.config",
    "pipeline.config_memory": "pipeline.config",
}  # split for length
LEAVES = ("pipeline.models", "pipeline.data", "pipeline.scaling", "pipeline.cost")  # no Lightning etc.
FORBIDDEN_IN_LEAVES = ("lightning", "pytorch_lightning", "deepspeed", "wandb", "pipeline.slurm")
# (importer, imported prefix): the few sideways or downward-exception edges that are part of the design
ALLOWED_SIDEWAYS = {
    ("pipeline.slurm", "pipeline.training.logged_metrics"),
    ("pipeline.sweep", "pipeline.slurm"),  # a sweep submits its SLURM array through the slurm package
}
TOP = 5  # the command-line layer: its modules may call each other (pipeline demo runs the trainer, cli all)


def part_of(module: str) -> str:
    """The layered package a dotted module name belongs to (`pipeline.training.module` -> `pipeline.training`)."""
    module = SAME_PART.get(module, module)
    parts = module.split(".")
    for n in (2, 1):
        name = ".".join(parts[:n])
        if name in LAYER:
            return name
    raise KeyError(module)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            # `from pipeline import export` imports the module pipeline.export
            names += [f"{node.module}.{a.name}" for a in node.names if node.module == "pipeline"]
    return names


SOURCES = sorted(ROOT.rglob("*.py"))


def violations(path: Path) -> list[str]:
    me = module_name(path)
    mine = part_of(me)
    found = []
    for name in imports_of(path):
        if mine in LEAVES and any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_LEAVES):
            found.append(f"{me} imports {name} (a leaf package must not)")
        if not name.startswith("pipeline.") or name == "pipeline":
            continue
        try:
            theirs = part_of(name)
        except KeyError:
            found.append(f"{me} imports {name}, which belongs to no layer (add it to LAYER)")
            continue
        if theirs == mine or any(mine == a and name.startswith(b) for a, b in ALLOWED_SIDEWAYS):
            continue
        if LAYER[theirs] == LAYER[mine] == TOP:
            continue
        if LAYER[theirs] > LAYER[mine]:
            found.append(f"{me} imports {name}: upward, layer {LAYER[mine]} -> {LAYER[theirs]}")
        elif LAYER[theirs] == LAYER[mine]:
            found.append(f"{me} imports {name}: sideways between {mine} and {theirs}")
    return found


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = []
    for path in SOURCES:
        try:
            part_of(module_name(path))
        except KeyError:
            unplaced.append(module_name(path))
    assert not unplaced, f"modules outside the layer table: {unplaced}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_imports_respect_the_layers(path: Path) -> None:
    assert violations(path) == []


def test_the_checker_catches_what_it_should(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A leaf importing Lightning, a leaf importing the trainer, and the trainer importing the sweep all fail."""
    fake_root = tmp_path / "pipeline"
    (fake_root / "models").mkdir(parents=True)
    (fake_root / "training").mkdir()
    (fake_root / "models" / "bad.py").write_text(
        "import lightning\nfrom pipeline.training.trainer import fit\ndef f():\n    from pipeline.data import x\n"
    )
    (fake_root / "training" / "bad.py").write_text(
        "def g():\n    from pipeline.sweep.runner import run_sweep\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", fake_root)
    models_bad = violations(fake_root / "models" / "bad.py")
    assert any("lightning" in v for v in models_bad)
    assert any("upward" in v and "pipeline.training.trainer" in v for v in models_bad)
    assert any("sideways" in v and "pipeline.data" in v for v in models_bad)
    assert any("upward" in v for v in violations(fake_root / "training" / "bad.py"))
