"""`pipeline` command line: one subcommand per job a researcher runs.

Each subcommand is a small function below that imports its module and returns its `Command`; it is called only
when that subcommand runs (or its help is asked), so `pipeline --help` and `pipeline submit` start instantly without
importing torch. A module contributes `add_<x>_arguments(parser)` and `run_<x>(args) -> int`; a command that trains
in this process also gives `main`, which ends the process the way a training process must
(`pipeline.training.process_exit.exit_process`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple, NoReturn


class Command(NamedTuple):
    """One subcommand's functions; `main` (optional) is the console-script form that ends the process itself."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    main: Callable[[argparse.Namespace], NoReturn] | None = None


def _train() -> Command:
    from pipeline.training.trainer import add_train_arguments, main_train, run_train

    return Command(add_train_arguments, run_train, main_train)


def _evaluate() -> Command:
    from pipeline.training.evaluate import add_evaluate_arguments, run_evaluate

    return Command(add_evaluate_arguments, run_evaluate)


def _demo() -> Command:
    from pipeline.demo import add_demo_arguments, run_demo

    return Command(add_demo_arguments, run_demo)


def _submit() -> Command:
    from pipeline.slurm.submit import add_submit_arguments, run_submit

    return Command(add_submit_arguments, run_submit)


def _status() -> Command:
    from pipeline.slurm.status import add_status_arguments, run_status

    return Command(add_status_arguments, run_status)


def _sweep() -> Command:
    from pipeline.sweep.runner import add_sweep_arguments, main_sweep, run_sweep

    return Command(add_sweep_arguments, run_sweep, main_sweep)


def _export() -> Command:
    from pipeline.export import add_export_arguments, run_export

    return Command(add_export_arguments, run_export)


def _data_prepare() -> Command:
    # pipeline.data.prepare.command's parser, plus --slurm
    from pipeline.slurm.data_prepare import add_data_prepare_arguments, run_data_prepare

    return Command(add_data_prepare_arguments, run_data_prepare)


def _scaling_fit() -> Command:
    from pipeline.scaling.cli import add_fit_arguments, run_fit_command

    return Command(add_fit_arguments, run_fit_command)


def _scaling_report() -> Command:
    from pipeline.scaling.cli import add_report_arguments, run_report_command

    return Command(add_report_arguments, run_report_command)


def _scaling_compare() -> Command:
    from pipeline.scaling.cli import add_compare_arguments, run_compare_command

    return Command(add_compare_arguments, run_compare_command)


def _scaling_coverage() -> Command:
    from pipeline.scaling.cli import add_coverage_arguments, run_coverage_command

    return Command(add_coverage_arguments, run_coverage_command)


def _scaling_rescore() -> Command:
    from pipeline.sweep.rescore import add_rescore_arguments, run_rescore_command

    return Command(add_rescore_arguments, run_rescore_command)


Table = dict[str, tuple[Callable[[], Command], str]]  # name -> (the subcommand's function, one-line help)
SUBCOMMANDS: Table = {
    "train": (_train, "train one model from a YAML config"),
    "evaluate": (
        _evaluate,
        "a run's valid loss; translation: test BLEU/chrF; MQAR/copy: answer accuracy; LM: loss by context (--contexts)",
    ),
    "demo": (
        _demo,
        "LSTM, residual LSTM and Transformer briefly on text, fitted and compared; then a recall panel",
    ),
    "submit": (_submit, "render an sbatch script and submit it"),
    "status": (_status, "table of runs, SLURM state, step and loss"),
    "sweep": (_sweep, "run a scaling grid locally or as a SLURM array"),
    "export": (_export, "consolidate a checkpoint to fp32 weights"),
}
DATA_SUBCOMMANDS: Table = {
    "prepare": (_data_prepare, "tokenize a corpus into shards"),
}
SCALING_SUBCOMMANDS: Table = {
    "fit": (_scaling_fit, "fit scaling laws to a sweep"),
    "report": (_scaling_report, "plots + report.md of a sweep"),
    "compare": (
        _scaling_compare,
        "the points two sweeps share, side by side (a rerun against the sweep it replaces)",
    ),
    "rescore": (
        _scaling_rescore,
        "add unigram_xent, the Kneser-Ney floors (and --contexts: L(K)) to a sweep's records from their data",
    ),
    "coverage": (
        _scaling_coverage,
        "how often the report's L_A / L_B interval covers the truth on simulated copies of the sweep,"
        " and the estimates' bias there",
    ),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """A flag's default in its help (when it has one worth saying), and epilogs (such as `pipeline train`'s key
    table) kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: {default})"


def _register(table: Table, subparsers: argparse._SubParsersAction, argv: Sequence[str]) -> None:
    """Add each subcommand's parser; call its function (its imports) only if it is the one being run."""
    for name, (command, help_text) in table.items():
        sub = subparsers.add_parser(
            name, help=help_text, description=help_text, formatter_class=HelpFormatter
        )
        if name in argv:
            loaded = command()
            loaded.add_arguments(sub)
            sub.set_defaults(_command=loaded)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Where does recurrence stop scaling? Train LSTM, residual-LSTM, minLSTM and Transformer models on "
        "translation, language modelling and memory tasks (MQAR recall, copy), sweep sizes on SLURM, fit scaling "
        "and capacity laws.",
        epilog="Errors a user can cause (a config key, a file, a damaged checkpoint) print one line "
        "`pipeline COMMAND: error: ...` "
        "naming the file or key and exit with status 2 (1 when training stopped on a non-finite loss); a bug "
        "shows its traceback. Set PIPELINE_DEBUG=1 to see the traceback of every error. On SIGTERM or SIGUSR1 "
        "`pipeline train` checkpoints at the next step boundary, or exits (143 / 75) after PIPELINE_STOP_TIMEOUT "
        "seconds (default 20) when none comes, e.g. while its data loader is stuck.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register(SUBCOMMANDS, subparsers, argv)
    data = subparsers.add_parser("data", help="data preparation", description="data preparation")
    _register(DATA_SUBCOMMANDS, data.add_subparsers(dest="data_command", metavar="COMMAND"), argv)
    scaling = subparsers.add_parser(
        "scaling", help="scaling-law fits and reports", description="scaling laws"
    )
    _register(SCALING_SUBCOMMANDS, scaling.add_subparsers(dest="scaling_command", metavar="COMMAND"), argv)
    # `pipeline data` / `pipeline scaling` with no subcommand print their own help, not the root's
    data.set_defaults(_help=data)
    scaling.set_defaults(_help=scaling)
    return parser


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, Command | None]:
    """The parsed arguments and the chosen subcommand (None: help was printed for a bare group)."""
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    command = getattr(args, "_command", None)
    if command is None:
        getattr(args, "_help", parser).print_help()
    return args, command


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand in this process and return its status (tests call this)."""
    args, command = _parse(list(sys.argv[1:] if argv is None else argv))
    return 2 if command is None else int(command.run(args) or 0)


def entry() -> NoReturn:
    """The `pipeline` console script and `python -m pipeline`. A subcommand that trains in this process ends it
    through its `main` (no interpreter teardown after a distributed run); the others exit with their status."""
    try:
        args, command = _parse(sys.argv[1:])
        if command is not None and command.main is not None:
            command.main(args)
        status = 2 if command is None else int(command.run(args) or 0)
    except (
        BrokenPipeError
    ):  # `pipeline sweep --dry-run | head`: the reader left; no traceback (Python docs' recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 141  # 128 + SIGPIPE, as a shell reports a killed pipe writer
    sys.exit(status)


if __name__ == "__main__":
    entry()
