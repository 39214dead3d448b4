"""The package layers, checked from the source: no import of a forbidden library, no import upward.

Layers, bottom to top (a module may import its own layer's package and any layer below, never one above):
  0  pipeline.models, pipeline.data   (neither imports the other)
  1  pipeline.config (checks model keys against the model registry), pipeline.cost (costs the models' structure)
     inside pipeline.config, each module imports only those before it in CONFIG_ORDER, and of the pipeline only
     the model registry and pipeline.data.memory_spec (CONFIG_MAY_IMPORT)
  2  pipeline.scaling (fits records; draws the time axis with the cost model)
  3  pipeline.training
  4  pipeline.slurm, pipeline.sweep
  5  pipeline.cli, pipeline.demo, pipeline.export, pipeline.__main__   (may import each other)
The leaves never import Lightning, DeepSpeed, wandb or SLURM code. Imports inside functions count too: a lazy
import is still a dependency. `pipeline.slurm` may read `pipeline.training.logged_metrics` (a CSV reader), and `pipeline.sweep` may submit
through `pipeline.slurm`. And no import circle between any two modules of `pipeline/` (lazy imports count,
`if TYPE_CHECKING:` ones do not).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.unit.import_graph import import_circles

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
    "pipeline.demo_recall": 5,
    "pipeline.export": 5,
    "pipeline.__main__": 5,
    "pipeline": 5,
}
SAME_PART: dict[str, str] = {}  # a module that belongs to another part than its name says
# pipeline.config's modules bottom up (its __init__ docstring): each may import only those before it, and the package
# may import nothing of the pipeline but the model registry and a memory task's spec (its checks, vocabulary, length)
CONFIG_ORDER = (
    "errors", "yaml_files", "keys", "memory", "schema", "model_section", "checks", "loading", "identity"
)  # fmt: skip
CONFIG_MAY_IMPORT = ("pipeline.models", "pipeline.data.memory_spec")
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


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` (annotations only: no import at run time)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING":
            skip.update(id(inner) for sub in node.body for inner in ast.walk(sub))
    return skip


def imports_of(
    path: Path, type_checking: bool = True, submodules: bool = False, package: str | None = None
) -> list[str]:
    """Dotted names `path` imports, lazy ones included. `type_checking=False` leaves out `if TYPE_CHECKING:`
    imports; `submodules=True` adds `a.b.c` for every `from a.b import c` (c may be a module); `package` (the
    module name of an `__init__`) resolves relative imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = set() if type_checking else _type_checking_only(tree)
    names = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                anchor = package or module_name(path).rpartition(".")[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                source = f"{anchor}.{node.module}" if node.module else anchor
            names.append(source)
            # `from pipeline import export` imports the module pipeline.export
            names += [f"{source}.{a.name}" for a in node.names if submodules or source == "pipeline"]
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


CONFIG_SOURCES = sorted((ROOT / "config").glob("*.py"))


def config_violations(path: Path) -> list[str]:
    """Imports of a `pipeline.config` module out of CONFIG_ORDER, or of a pipeline part besides the registry."""
    me = module_name(path)
    if me == "pipeline.config":  # the package's __init__ re-exports its modules
        return [f"{me} imports {n}" for n in imports_of(path) if n.startswith("pipeline.") and not
                n.startswith("pipeline.config.")]  # fmt: skip
    mine = CONFIG_ORDER.index(me.rpartition(".")[2])
    found = []
    for name in imports_of(path, type_checking=False):
        if name.startswith("pipeline.config."):
            theirs = name.split(".")[2]
            if theirs not in CONFIG_ORDER or CONFIG_ORDER.index(theirs) >= mine:
                found.append(f"{me} imports {name}: not below it in CONFIG_ORDER")
        elif name == "pipeline.config":
            found.append(f"{me} imports the package pipeline.config: import the module itself")
        elif name.startswith("pipeline.") and not name.startswith(CONFIG_MAY_IMPORT):
            found.append(f"{me} imports {name}: the config package may import only {CONFIG_MAY_IMPORT}")
    return found


def test_the_config_package_lists_every_module() -> None:
    names = {p.stem for p in CONFIG_SOURCES} - {"__init__"}
    assert names == set(CONFIG_ORDER)


@pytest.mark.parametrize("path", CONFIG_SOURCES, ids=lambda p: p.name)
def test_config_modules_import_downward_only(path: Path) -> None:
    assert config_violations(path) == []


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports, lazy (in-function) imports included, TYPE_CHECKING ones not.

    `from a.b import c` is an edge to `a.b.c` when that is a module, else to `a.b`. A package's `__init__`
    importing its own submodules (re-exports) is no edge: the submodules do not depend on it for that."""
    base = root.parent
    files = {module_name_under(p, base): p for p in root.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for target in imports_of(path, type_checking=False, submodules=True, package=mod if is_pkg else None):
            found = resolve(target) if target.startswith(root.name) else None
            if found and found != mod and not (is_pkg and found.startswith(mod + ".")):
                graph[mod].add(found)
    return graph


def module_name_under(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_circles_anywhere_in_pipeline() -> None:
    circles = import_circles(import_graph(ROOT))
    assert circles == [], "import circles:\n" + "\n".join(", ".join(c) for c in circles)


def test_the_circle_finder_sees_lazy_imports_and_skips_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg.a import f\n")  # a re-export: no circle with pkg.a
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from pkg.c import g\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.e import x\n"
    )
    (pkg / "e.py").write_text("from pkg.d import y\n")
    assert import_circles(import_graph(pkg)) == [["pkg.a", "pkg.b", "pkg.c"]]


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


def test_the_config_order_check_catches_an_upward_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "pipeline" / "config"
    fake.mkdir(parents=True)
    (fake / "errors.py").write_text(
        "def f():\n    from pipeline.config.loading import x\n    from pipeline.training import y\n"
        "    from pipeline.config import z\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path / "pipeline")
    found = config_violations(fake / "errors.py")
    assert any("pipeline.config.loading: not below it" in v for v in found)
    assert any("pipeline.training: the config package may import only" in v for v in found)
    assert any("imports the package pipeline.config" in v for v in found)
