"""Generated hostile command lines: every flag of every command x hostile values.

The cases come from each command's own argparse parser (`pipeline.cli.build_parser`), not from a hand list: every
option that takes a value, and every positional, gets the hostile values of its kind (a number: negative, zero,
nan, inf, huge, not a number, empty; a choice: a bogus one, empty; text or a path: empty, a path under a file, a
path that does not exist, a file where a directory is meant). Each case is one in-process call of
`pipeline.cli.main` on a valid command line with that one value changed, and must end in success (exit 0) or in
exit 2 with exactly one `pipeline COMMAND: error:` line that names the flag (or, for a path, the file), and never
in a traceback or another status.

`pipeline scaling report/compare/coverage`: only the values their parsers refuse are generated (a number that is
not one, a bogus choice); values that parse reach the scaling code (being restructured), which is left to its own
tests. The commands' SLURM-only flags are fuzzed a second time with `--slurm --dry-run`, where they are read.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from pipeline.cli import build_parser
from pipeline.cli import main as cli
from tests.conftest import ROOT, TINY
from tests.unit.data_fixtures import write_parallel

NUMBER = {
    "int": ["-1", "0", "nan", "inf", "99999999999999999999", "abc", ""],
    "float": ["-1", "0", "nan", "inf", "1e400", "abc", ""],
}
CHOICE = ["bogus", ""]
TEXT = ["", "-1", "{under_file}", "{missing}"]
POSITIONAL = ["", "{under_file}", "{missing}", "{a_file}"]
LEFT_TO_SCALING = ("scaling report", "scaling compare", "scaling coverage")


def subparser(command: str) -> argparse.ArgumentParser:
    """The parser of `pipeline <command>` ("data prepare": two words), with its arguments registered."""
    words = command.split()
    parser = build_parser(words)
    for word in words:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


def kind(action: argparse.Action) -> str:
    if action.choices is not None:
        return "choice"
    if action.type in (int, float):
        return action.type.__name__
    if action.type in (None, str, Path):
        return "text"
    try:  # a custom type (e.g. an int that must be >= 1): what it makes of a plain number
        made = action.type("3")
    except Exception:  # noqa: BLE001 - a type that refuses "3" takes text
        return "text"
    return "int" if isinstance(made, int) else "float" if isinstance(made, float) else "text"


def takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0 and not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)


def values_for(command: str, action: argparse.Action) -> list[str]:
    """The hostile values of an argument's kind; for the scaling commands only those their parser refuses."""
    if not action.option_strings:
        return [] if command in LEFT_TO_SCALING else POSITIONAL  # any text parses: scaling code judges it
    k = kind(action)
    values = NUMBER.get(k, CHOICE if k == "choice" else TEXT)
    if command in LEFT_TO_SCALING:
        return [v for v in values if _refused_by_parser(action, v)]
    return values


def _refused_by_parser(action: argparse.Action, value: str) -> bool:
    if action.choices is not None:
        return value not in action.choices
    try:
        (action.type or str)(value)
    except (ValueError, TypeError, argparse.ArgumentTypeError):
        return True
    return False


class Mode(NamedTuple):
    """A command and the valid command line its cases change: `base(paths)` -> (positionals, options)."""

    command: str
    base: Callable[[dict[str, Path]], tuple[list[str], list[str]]]
    only: Callable[[argparse.Action], bool] = lambda a: True  # which arguments this mode fuzzes


def _slurm_group(action: argparse.Action) -> bool:
    return bool(action.container.title and "slurm" in action.container.title.lower())


CONFIGS = [f"--config={p}" for p in [*TINY, ROOT / "configs/tiny/lstm.yaml"]]
GRID = str(ROOT / "configs/sweeps/tiny.yaml")


def _prepare_base(p: dict[str, Path]) -> list[str]:
    return ["--src", str(p["src"]), "--tgt", str(p["tgt"]), "--out", str(p["tmp"] / "prepared"),
            "--vocab-size", "300", "--max-len", "48", "--shard-size", "8", "--workers", "1"]  # fmt: skip


MODES = [
    Mode("evaluate", lambda p: ([str(p["run"])], ["--pairs", "2"])),
    Mode("export", lambda p: ([str(p["run"])], ["--out", str(p["tmp"] / "export.pt")])),
    Mode("data prepare", lambda p: ([], _prepare_base(p)), lambda a: not _slurm_group(a)),
    Mode("data prepare", lambda p: ([], [*_prepare_base(p), "--slurm", "--dry-run"]), _slurm_group),
    Mode("sweep", lambda p: ([], ["--grid", GRID, "--dry-run", "--out", str(p["tmp"] / "sweep")])),
    Mode("sweep", lambda p: ([], ["--grid", GRID, "--dry-run", "--out", str(p["tmp"] / "sweep"), "--slurm"]),
         _slurm_group),
    Mode("submit", lambda p: ([], ["--dry-run", *CONFIGS])),
    Mode("status", lambda p: ([str(p["run"])], [])),
    Mode("scaling report", lambda p: ([str(p["tmp"] / "no-sweep")], [])),
    Mode("scaling compare", lambda p: ([str(p["tmp"] / "a"), str(p["tmp"] / "b")], [])),
    Mode("scaling coverage", lambda p: ([str(p["tmp"] / "no-sweep"), "lstm", "transformer"], [])),
]  # fmt: skip


class Case(NamedTuple):
    mode: Mode
    action: argparse.Action
    value: str

    @property
    def id(self) -> str:
        flag = self.action.option_strings[-1] if self.action.option_strings else self.action.dest
        return f"{self.mode.command} {flag} {self.value!r}"


def generate() -> list[Case]:
    cases = []
    for mode in MODES:
        for action in subparser(mode.command)._actions:
            if takes_value(action) and mode.only(action):
                cases += [Case(mode, action, v) for v in values_for(mode.command, action)]
    return cases


CASES = generate()


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny prepared corpus and a 2-step LSTM run on it (the run that evaluate/export/status read)."""
    from pipeline.config import load_config
    from pipeline.training.trainer import fit

    root = tmp_path_factory.mktemp("cli_fuzz")
    src, tgt = write_parallel(root)
    overrides = [f"data.dir={root / 'data'}", f"data.corpus=parallel:{src}|{tgt}", "data.limit=0",
                 "data.vocab_size=300", "data.max_len=48", f"run_dir={root / 'run'}", "train.max_steps=2",
                 "train.val_every=2", "train.val_batches=1", "train.bleu_samples=0"]  # fmt: skip
    fit(load_config([*TINY, ROOT / "configs/tiny/lstm.yaml"], overrides))
    (root / "a_file").write_text("a file, not a directory\n")
    return {"src": src, "tgt": tgt, "run": root / "run", "root": root}


def _resolve(value: str, tmp: Path, root: Path) -> str:
    return value.format(
        under_file=root / "a_file" / "x", missing=tmp / "missing" / "x", a_file=root / "a_file"
    )


def argv_of(case: Case, p: dict[str, Path]) -> tuple[list[str], str]:
    """The command line of a case and the value as given."""
    positionals, options = case.mode.base(p)
    value = _resolve(case.value, p["tmp"], p["root"])
    if case.action.option_strings:
        return [
            *case.mode.command.split(),
            *positionals,
            *options,
            case.action.option_strings[-1],
            value,
        ], value
    index = [a.dest for a in subparser(case.mode.command)._actions if not a.option_strings].index(
        case.action.dest
    )
    positionals = [*positionals]
    if index < len(positionals):
        positionals[index] = value
    else:  # an optional positional the base leaves out (e.g. overrides): given this once
        positionals.append(value)
    return [*case.mode.command.split(), *positionals, *options], value


def names(action: argparse.Action, value: str) -> list[str]:
    """What the error line may name: the flag, its key (`--max-len`: max_len), its metavar; a path or word given
    as text may be named instead (the file the error is about), an empty one quoted."""
    out = [*action.option_strings, action.dest, action.dest.replace("_", "-")]
    if isinstance(action.metavar, str):
        out.append(action.metavar)
    if not action.option_strings or kind(action) == "text":  # a path or a word: named as given, or quoted
        out += [value, f"'{value}'"] if value else ["''"]
    return out


def run(argv: list[str]) -> tuple[Any, str]:
    """(exit status, or the exception that escaped) and stderr of one in-process call."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            status: Any = cli(argv)
        except SystemExit as stop:
            status = stop.code
        except Exception as exn:  # noqa: BLE001 - an escaped exception is the failure this suite looks for
            status = exn
    return status, err.getvalue()


def problem(case: Case, argv: list[str], value: str) -> str | None:
    status, err = run(argv)
    if isinstance(status, BaseException):
        return f"{type(status).__name__} escaped: {str(status)[:300]}"
    if status == 0:
        return None
    prefix = f"pipeline {case.mode.command}: error: "
    lines = [line for line in err.splitlines() if line.startswith(prefix)]
    if status != 2 or len(lines) != 1 or "Traceback" in err:
        return f"exit {status}, {len(lines)} error line(s): {err[-600:]!r}"
    needles = names(case.action, value)
    if not any(n and n in lines[0] for n in needles):
        return f"the error does not name {needles[0]!r}: {lines[0][:300]}"
    return None


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, paths: dict[str, Path]) -> dict[str, Path]:
    """No cluster file, HOME and the working directory in tmp (submit/sweep write nothing of the user's)."""
    monkeypatch.delenv("PIPELINE_CLUSTER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return {**paths, "tmp": tmp_path}


COMMANDS = sorted({c.mode.command for c in CASES})


@pytest.mark.parametrize("command", COMMANDS)
def test_every_hostile_value_of_every_flag_ends_clearly(command: str, isolated: dict[str, Path]) -> None:
    """One test per command (pytest's per-test overhead would dominate hundreds of millisecond calls)."""
    failures = []
    for case in [c for c in CASES if c.mode.command == command]:
        argv, value = argv_of(case, isolated)
        found = problem(case, argv, value)
        if found:
            failures.append(f"{case.id}: {found}")
    assert not failures, f"{len(failures)} case(s):\n" + "\n".join(failures)


def test_the_generator_reaches_every_argument_of_every_command() -> None:
    """Every option and positional that takes a value is fuzzed (the scaling commands: those with a type or
    choices), so a flag added to any command joins this suite without a line here."""
    for command in {m.command for m in MODES}:
        fuzzed = {c.action.dest for c in CASES if c.mode.command == command}
        for action in subparser(command)._actions:
            if not takes_value(action):
                continue
            parses_anything = command in LEFT_TO_SCALING and not values_for(command, action)
            assert action.dest in fuzzed or parses_anything, f"{command}: {action.dest} not fuzzed"
    assert set(COMMANDS) >= {"evaluate", "export", "data prepare", "sweep", "submit", "status"}
    assert len(CASES) >= 300
