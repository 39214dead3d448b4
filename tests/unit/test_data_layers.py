"""The layers inside `pipeline/data`, checked from the source: the train-time loader reaches no preparation code,
and no two data modules import each other in a circle.

Imports inside functions count (a lazy import is still a dependency); `if TYPE_CHECKING:` ones do not. Importing a
module also runs its packages' `__init__`, so those count for what the loader reaches.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.unit.import_graph import import_circles

ROOT = Path(__file__).resolve().parents[2]
# Preparation: reading corpora and writing shards. A training run only reads shards.
PREPARATION = ("pipeline.data.prepare", "pipeline.data.sources")


def data_modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under `root/pipeline/data` (a package is its `__init__.py`)."""
    out = {}
    for path in sorted((root / "pipeline" / "data").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            if (test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)) == "TYPE_CHECKING":
                skip.update(id(inner) for sub in node.body for inner in ast.walk(sub))
    return skip


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The data modules `module` imports anywhere in its source (absolute and relative imports)."""

    def resolve(name: str) -> str | None:
        while name:
            if name in modules:
                return name
            name = name.rpartition(".")[0]
        return None

    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(r for name in names if (r := resolve(name)) is not None and r != module)
    return found


def parents(module: str, modules: dict[str, Path]) -> set[str]:
    """The packages whose `__init__` runs when `module` is imported (within `pipeline.data`)."""
    parts = module.split(".")
    return {".".join(parts[:n]) for n in range(2, len(parts))} & set(modules)


def reach(start: str, modules: dict[str, Path]) -> set[str]:
    """Every data module that importing `start` may import, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        for dep in imports_of(module, modules[module], modules) | parents(module, modules):
            if dep not in seen and dep != start:
                seen.add(dep)
                todo.append(dep)
    return seen


def circles(modules: dict[str, Path]) -> list[list[str]]:
    """Strongly connected groups of more than one module (a package re-exporting its own submodules excepted)."""
    edges = {
        m: {d for d in imports_of(m, p, modules) if not (p.name == "__init__.py" and d.startswith(m + "."))}
        for m, p in modules.items()
    }
    return import_circles(edges)


def loader_module(modules: dict[str, Path]) -> str:
    """The module that defines `build_loader`, the train-time reader."""
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "build_loader" for n in tree.body):
            return module
    raise AssertionError("no module in pipeline/data defines build_loader")


def preparation_in(names: set[str]) -> list[str]:
    return sorted(n for n in names if n.startswith(PREPARATION) or n.rpartition(".")[2].endswith("prepare"))


def test_the_loader_reaches_no_preparation_code() -> None:
    modules = data_modules(ROOT)
    loader = loader_module(modules)
    reached = reach(loader, modules)
    assert not preparation_in(reached), f"{loader} reaches preparation modules: {preparation_in(reached)}"
    assert "pipeline.data.manifest" in reached  # it does read the manifest, from the leaf that owns it


def test_pipeline_data_has_no_import_circle() -> None:
    assert circles(data_modules(ROOT)) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / "pipeline" / "data" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_find_a_lazy_preparation_import_and_a_circle(tmp_path: Path) -> None:
    """The two checks fail on a tree that breaks them: lazily, relatively, and through a package `__init__`."""
    _write(tmp_path, {
        "__init__.py": "",
        "text.py": "",
        "manifest.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipeline.data.sources import corpus\n",
        "stream/__init__.py": "",
        "stream/loader.py": "from pipeline.data import manifest\ndef build_loader():\n    from . import helper\n",
        "stream/helper.py": "def f():\n    from ..prepare.build import prepare\n",
        "prepare/__init__.py": "",
        "prepare/build.py": "from pipeline.data.prepare import plan\ndef prepare(): ...\n",
        "prepare/plan.py": "def g():\n    from pipeline.data.prepare.build import prepare\n",
        "sources/__init__.py": "from pipeline.data.sources import corpus\n",
        "sources/corpus.py": "from pipeline.data import text\n",
    })  # fmt: skip
    modules = data_modules(tmp_path)
    assert loader_module(modules) == "pipeline.data.stream.loader"
    assert preparation_in(reach("pipeline.data.stream.loader", modules)) == [
        "pipeline.data.prepare", "pipeline.data.prepare.build", "pipeline.data.prepare.plan"
    ]  # fmt: skip
    assert circles(modules) == [["pipeline.data.prepare.build", "pipeline.data.prepare.plan"]]
    _write(
        tmp_path,
        {
            "stream/helper.py": "",
            "prepare/plan.py": "",
            "stream/__init__.py": "import pipeline.data.sources\n",
        },
    )
    assert preparation_in(reach("pipeline.data.stream.loader", data_modules(tmp_path))) == [
        "pipeline.data.sources", "pipeline.data.sources.corpus"
    ]  # fmt: skip
    assert circles(data_modules(tmp_path)) == []
