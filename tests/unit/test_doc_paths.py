"""Every repository path the docs name exists: README.md, docs/**/*.md, results/*/README.md, slurm/*.sbatch.

Why: paths in prose rot silently when modules move (a doc naming `pipeline/deepspeed_strategy.py` after it moved to
`pipeline/training/`). A path-like token is a word with a `/` that ends in a file extension or a `/`, or starts
with one of the repository's directories; it is read from backtick spans, link targets and fenced code blocks of
the markdown files, and from the comment lines of the sbatch templates. A token resolves against the repository
root or the naming file's directory. Not checked: placeholders (`<run>`, `{{x}}`, `RUN_DIR/...`, `*`, `...`), URLs,
absolute and home paths, and what commands write (`OUTPUTS`).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REPO_DIRS = ("pipeline", "configs", "docs", "tests", "scripts", "benchmarks", "slurm", "results")
# What commands create (run directories, prepared data, sweep outputs): named in the docs, absent from a checkout.
OUTPUTS = ("runs/", "data/", "checkpoints/", "csv/", "wandb/", "previous-")
EXTENSION = re.compile(r"\.(py|md|ya?ml|json|jsonl|sbatch|sh|txt|toml|png|pdf|npz|log|csv|cfg|ckpt|pt|tar)$")
PLACEHOLDER = re.compile(r"[<>{}*$…]|\.\.\.|^[A-Z][A-Z0-9_]*(/|$)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
SPAN = re.compile(r"`([^`\n]+)`")
DOTTED = re.compile(r"^pipeline(\.[A-Za-z_]\w*)+$")
LINK = re.compile(r"\]\(([^)\s]+)\)|^\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def _is_path(word: str) -> bool:
    if "/" not in word or "://" in word or word.startswith(("/", "~", "-", "#")) or PLACEHOLDER.search(word):
        return False
    if ":" in word or "=" in word or word.startswith(OUTPUTS) or "/" + OUTPUTS[0] in word:
        return False
    parts = word.rstrip("/").split("/")
    if parts[0] in REPO_DIRS:
        return True
    # a bare `name/` is shorthand (`models/` for pipeline/models/, `train/` inside a data dir), not a path
    return len(parts) > 1 and (bool(EXTENSION.search(word)) or word.endswith("/"))


def _words(text: str) -> list[str]:
    return [w.strip("()[],;:.'\"") for w in text.split()]


def markdown_paths(text: str) -> list[str]:
    """Path-like tokens of a markdown text: fenced code, backtick spans and link targets (anchors dropped)."""
    found = []
    for block in FENCE.findall(text):
        found += [w for w in _words(block.strip("`")) if _is_path(w)]
    prose = FENCE.sub("", text)
    for span in SPAN.findall(prose):
        found += [w for w in _words(span) if _is_path(w)]
    for inline, reference in LINK.findall(prose):
        target = (inline or reference).split("#")[0]
        if target and "://" not in target and not target.startswith("mailto:"):
            found.append(target)
    return found


def sbatch_paths(text: str) -> list[str]:
    """Path-like words of a template's comment lines (not the shebang, not #SBATCH directives)."""
    comments = [ln for ln in text.splitlines() if ln.startswith("#") and not ln.startswith(("#!", "#SBATCH"))]
    return [w for ln in comments for w in _words(ln.lstrip("# ").replace("`", " ")) if _is_path(w)]


def doc_files() -> list[Path]:
    files = [
        REPO / "README.md",
        *sorted((REPO / "docs").rglob("*.md")),
        *sorted(REPO.glob("results/*/README.md")),
    ]
    return [*files, *sorted((REPO / "slurm").glob("*.sbatch"))]


@cache
def _top_level_names(module: Path) -> frozenset[str]:
    """Names a module defines or imports at top level, read from its source (importing it would load torch)."""
    names = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return frozenset(names)


def dotted_names(text: str) -> list[str]:
    """`pipeline.a.b` references in backtick spans and fenced code (`python -m pipeline.x`, `pipeline.x.func`)."""
    spans = [*FENCE.findall(text), *SPAN.findall(FENCE.sub("", text))]
    return [w for span in spans for w in _words(span.strip("`").replace("(", " ")) if DOTTED.match(w)]


def resolves(dotted: str) -> bool:
    """The longest module prefix exists, and what follows it is at most a name it defines (plus one attribute)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:cut])
        module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if module.is_file():
            rest = parts[cut:]
            return not rest or (len(rest) <= 2 and rest[0] in _top_level_names(module))
    return False


def missing_paths(doc: Path) -> list[str]:
    text = doc.read_text()
    paths = sbatch_paths(text) if doc.suffix == ".sbatch" else markdown_paths(text)
    missing = {p for p in paths if not (REPO / p).exists() and not (doc.parent / p).exists()}
    if doc.suffix == ".md":
        missing.update(d for d in dotted_names(text) if not resolves(d))
    return sorted(missing)


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_named_path_exists(doc: Path) -> None:
    missing = missing_paths(doc)
    assert not missing, f"{doc.relative_to(REPO)} names paths that do not exist: {', '.join(missing)}"


def test_the_extractor_finds_paths_in_each_form() -> None:
    text = (
        "See `pipeline/training/trainer.py` and [the method](docs/scaling-method.md#intervals).\n[ref]: docs/index.md\n"
        "```bash\npipeline sweep --grid configs/sweeps/tiny.yaml --out runs/sweeps/tiny\n```\n"
        "Outputs and placeholders: `<run_dir>/config.yaml`, `RUN_DIR/model_fp32.pt`, `results/<study>/report.md`,\n"
        "`data.corpus=text:FILE`, `~/.config/pipeline/cluster.yaml`, `http://x/y.py`, `models/`, `a/b`, `c/d.py`.\n"
    )
    assert markdown_paths(text) == [
        "configs/sweeps/tiny.yaml", "pipeline/training/trainer.py", "c/d.py", "docs/scaling-method.md", "docs/index.md",
    ]  # fmt: skip
    sbatch = "#!/bin/bash\n# Rendered by `pipeline submit` (pipeline/slurm/render.py); {{x}}\n#SBATCH --out=a/b.log\n"
    assert sbatch_paths(sbatch) == ["pipeline/slurm/render.py"]


def test_a_stale_path_is_reported(tmp_path: Path) -> None:
    doc = tmp_path / "README.md"
    doc.write_text(
        "The strategy is `pipeline/deepspeed_strategy.py`; the trainer `pipeline/training/trainer.py`.\n"
        "`pipeline.models.registry.build_model(arch)`, `pipeline.models.no_such_function`, `python -m pipeline.nowhere`.\n"
    )
    assert missing_paths(doc) == [
        "pipeline.models.no_such_function", "pipeline.nowhere", "pipeline/deepspeed_strategy.py",
    ]  # fmt: skip


def test_the_docs_name_paths_at_all() -> None:
    """Guards against an extractor that silently finds nothing: the README alone names many repository paths."""
    named = markdown_paths((REPO / "README.md").read_text())
    assert len(set(named)) >= 15 and "configs/sweeps/tiny.yaml" in named
