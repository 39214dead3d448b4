"""The layers inside `pipeline.scaling`, checked from the source: imports point down, and no import circle.

Bottom to top: records (run files) <- fits (laws, intervals, frontier) <- analyses (result objects) <- report
(fit.json, markdown, figures) <- tools <- cli. A module may import its own layer and any layer below; imports inside
functions count (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.unit.import_graph import import_circles

ROOT = Path(__file__).resolve().parents[2] / "pipeline" / "scaling"
PACKAGE = "pipeline.scaling"
LAYERS = ("records", "fits", "analyses", "report", "tools", "cli")  # bottom to top


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def layer_of(module: str) -> int:
    """The layer index of a `pipeline.scaling` module; the package root counts as the top (it re-exports nothing)."""
    rest = module[len(PACKAGE) + 1 :].split(".")[0] if module != PACKAGE else ""
    return LAYERS.index(rest) if rest in LAYERS else len(LAYERS)


def imports_of(path: Path, me: str) -> set[str]:
    """Every `pipeline.scaling` module ``path`` imports, at any depth of the file (``from X import y`` also counts
    X.y, which is the module when y is a submodule)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
    return {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}


def graph(root: Path) -> dict[str, set[str]]:
    """module -> the scaling modules it imports (names resolved to existing modules)."""
    modules = {module_name(root, p): p for p in root.rglob("*.py")}
    out = {}
    for me, path in modules.items():
        edges = set()
        for name in imports_of(path, me):
            while name and name not in modules:  # `from pkg.mod import func` -> pkg.mod
                name = name.rsplit(".", 1)[0] if "." in name else ""
            if name and name != me and not (path.name == "__init__.py" and name.startswith(me + ".")):
                edges.add(name)
        out[me] = edges
    return out


def violations(root: Path) -> list[str]:
    return sorted(
        f"{me} (layer {LAYERS[layer_of(me)] if layer_of(me) < len(LAYERS) else 'package'}) imports {dep}"
        for me, deps in graph(root).items()
        for dep in deps
        if layer_of(dep) > layer_of(me)
    )


def circles(root: Path) -> list[list[str]]:
    """Strongly connected components of more than one module, each sorted."""
    return import_circles(graph(root))


def test_every_scaling_module_sits_in_a_layer() -> None:
    outside = [m for m in graph(ROOT) if m != PACKAGE and layer_of(m) == len(LAYERS)]
    assert not outside, f"modules outside {LAYERS}: {outside}"


def test_scaling_imports_point_down() -> None:
    assert violations(ROOT) == []


def test_scaling_has_no_import_circle() -> None:
    assert circles(ROOT) == []


@pytest.mark.parametrize("layer", LAYERS[:-1])
def test_each_layer_package_says_what_it_owns_and_may_import(layer: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / layer / "__init__.py").read_text()))
    assert doc and "May import" in doc


def test_the_checker_catches_an_upward_import_and_a_circle(tmp_path: Path) -> None:
    root = tmp_path / "scaling"
    for layer in ("records", "fits", "analyses", "report"):
        (root / layer).mkdir(parents=True)
        (root / layer / "__init__.py").write_text("")
    (root / "records" / "bad.py").write_text(
        "def f():\n    from pipeline.scaling.report.write import write_report\n"
    )
    (root / "fits" / "up.py").write_text("from pipeline.scaling.analyses import study\n")
    (root / "analyses" / "study.py").write_text("from pipeline.scaling.fits.laws import FitResult\n")
    (root / "fits" / "laws.py").write_text("from .frontier import frontier\n")
    (root / "fits" / "frontier.py").write_text("from pipeline.scaling.fits import laws\n")
    (root / "report" / "write.py").write_text("from pipeline.scaling.fits import laws\n")  # downward: fine
    found = violations(root)
    assert (
        found
        == [
            "pipeline.scaling.fits.up (layer fits) imports pipeline.scaling.analyses",  # the package, then its module
            "pipeline.scaling.fits.up (layer fits) imports pipeline.scaling.analyses.study",
            "pipeline.scaling.records.bad (layer records) imports pipeline.scaling.report.write",
        ]
    )
    assert circles(root) == [["pipeline.scaling.fits.frontier", "pipeline.scaling.fits.laws"]]
