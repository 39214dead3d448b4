"""`pipeline` command line: one subcommand per job a researcher runs.

Each subcommand's module is imported only when that subcommand runs, so `pipeline --help` and `pipeline submit`
start instantly without importing torch. A module contributes two functions: `add_<x>_arguments(parser)` and
`run_<x>(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# name -> (module, add-arguments function, run function, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str, str]] = {
    "train": (
        "pipeline.training.trainer",
        "add_train_arguments",
        "run_train",
        "train one model from a YAML config",
    ),
    "evaluate": (
        "pipeline.training.evaluate",
        "add_evaluate_arguments",
        "run_evaluate",
        "valid loss, test BLEU/chrF of a run",
    ),
    "demo": (
        "pipeline.demo",
        "add_demo_arguments",
        "run_demo",
        "train all three architectures briefly and compare",
    ),
    "submit": (
        "pipeline.slurm.submit",
        "add_submit_arguments",
        "run_submit",
        "render an sbatch script and submit it",
    ),
    "status": (
        "pipeline.slurm.submit",
        "add_status_arguments",
        "run_status",
        "table of runs, SLURM state, step and loss",
    ),
    "sweep": (
        "pipeline.sweep.runner",
        "add_sweep_arguments",
        "run_sweep",
        "run a scaling grid locally or as a SLURM array",
    ),
    "export": (
        "pipeline.export",
        "add_export_arguments",
        "run_export",
        "consolidate a checkpoint to fp32 weights",
    ),
}
DATA_SUBCOMMANDS = {
    "prepare": (
        "pipeline.slurm.data_prepare",  # pipeline.data.prepare's command, plus --slurm
        "add_prepare_arguments",
        "run_prepare",
        "tokenize a corpus into shards",
    ),
}
SCALING_SUBCOMMANDS = {
    "fit": ("pipeline.scaling.cli", "add_fit_arguments", "run_fit_command", "fit scaling laws to a sweep"),
    "report": (
        "pipeline.scaling.cli",
        "add_report_arguments",
        "run_report_command",
        "plots + report.md of a sweep",
    ),
    "compare": (
        "pipeline.scaling.cli",
        "add_compare_arguments",
        "run_compare_command",
        "the points two sweeps share, side by side (a rerun against the sweep it replaces)",
    ),
    "coverage": (
        "pipeline.scaling.cli",
        "add_coverage_arguments",
        "run_coverage_command",
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


def _lazy(
    table: dict[str, tuple[str, str, str, str]], subparsers: argparse._SubParsersAction, argv: Sequence[str]
):
    """Register subcommands; import a module only if its subcommand is the one being run (or help is asked)."""
    for name, (module, add_fn, run_fn, help_text) in table.items():
        sub = subparsers.add_parser(
            name, help=help_text, description=help_text, formatter_class=HelpFormatter
        )
        if name in argv:
            mod = importlib.import_module(module)
            getattr(mod, add_fn)(sub)
            sub.set_defaults(_run=(module, run_fn))
        else:
            sub.set_defaults(_run=(module, run_fn))


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Where does recurrence stop scaling? Train LSTM / residual-LSTM / Transformer seq2seq models, "
        "sweep sizes on SLURM, fit scaling laws.",
        epilog="Errors a user can cause (a config key, a file, a damaged checkpoint) print one line "
        "`pipeline COMMAND: error: ...` "
        "naming the file or key and exit with status 2 (1 when training stopped on a non-finite loss); a bug "
        "shows its traceback. Set PIPELINE_DEBUG=1 to see the traceback of every error. On SIGTERM or SIGUSR1 "
        "`pipeline train` checkpoints at the next step boundary, or exits (143 / 75) after PIPELINE_STOP_TIMEOUT "
        "seconds (default 20) when none comes, e.g. while its data loader is stuck.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _lazy(SUBCOMMANDS, subparsers, argv)
    data = subparsers.add_parser("data", help="data preparation", description="data preparation")
    _lazy(DATA_SUBCOMMANDS, data.add_subparsers(dest="data_command", metavar="COMMAND"), argv)
    scaling = subparsers.add_parser(
        "scaling", help="scaling-law fits and reports", description="scaling laws"
    )
    _lazy(SCALING_SUBCOMMANDS, scaling.add_subparsers(dest="scaling_command", metavar="COMMAND"), argv)
    # `pipeline data` / `pipeline scaling` with no subcommand print their own help, not the root's
    data.set_defaults(_help=data)
    scaling.set_defaults(_help=scaling)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        getattr(args, "_help", parser).print_help()
        return 2
    module, run_fn = args._run
    return int(getattr(importlib.import_module(module), run_fn)(args) or 0)


def entry() -> None:
    """The `pipeline` console script and `python -m pipeline`: `main`, then the process ends the way a training
    process must (`pipeline.training.trainer.exit_process`: no interpreter teardown after a distributed run).
    In-process callers (tests) use `main`, which returns the status instead."""
    try:
        status = main()
    except (
        BrokenPipeError
    ):  # `pipeline sweep --dry-run | head`: the reader left; no traceback (Python docs' recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 141  # 128 + SIGPIPE, as a shell reports a killed pipe writer
    if "pipeline.training.trainer" in sys.modules:
        sys.modules["pipeline.training.trainer"].exit_process(status)
    sys.exit(status)


if __name__ == "__main__":
    entry()
