"""Which exceptions are the user's doing (one `error:` line, exit 2) and which are bugs (keep their traceback).

`pipeline train/evaluate` used to catch every ValueError, which turned internal bugs into one misleading line,
and too few other types, which showed tracebacks for a read-only run directory or a data dir that is a file.
The rule here: the project's own error types; an OSError that names a file (the user's path); and a ValueError
or an OSError only when our input-checking code raised it (`pipeline/data/`, `pipeline/config/`: corpus
specs, prepared data), never one from torch, Lightning or the trainer. `PIPELINE_DEBUG=1` shows the traceback
of all of them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.data.manifest import ShardError
from pipeline.training.checkpoint_files import ResumeError

DEBUG_ENV = "PIPELINE_DEBUG"
EXIT_USER_ERROR = 2  # bad input: fix it and run again
EXIT_DIVERGED = 1  # the run itself failed (a non-finite loss): not the command line's fault
_PACKAGE = Path(__file__).resolve().parents[1]
_INPUT_CODE = (_PACKAGE / "data", _PACKAGE / "config")


def _raised_in_input_code(err: BaseException) -> bool:
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    path = Path(tb.tb_frame.f_code.co_filename).resolve()
    return any(path == code or code in path.parents for code in _INPUT_CODE)


def _project_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ConfigError, ResumeError, ShardError]
    deepspeed_module = sys.modules.get("pipeline.training.deepspeed_strategy")  # loaded if it raised
    if deepspeed_module is not None:
        types.append(deepspeed_module.ZeroResumeError)
    return tuple(types)


def user_error(err: BaseException) -> tuple[str, int] | None:
    """(message, exit status) for an error the user caused, None for a bug (re-raise it)."""
    # looked up, not imported: importing it loads Lightning (~5 s), which a config error never needs
    nonfinite = sys.modules.get("pipeline.training.nonfinite")
    if nonfinite is not None and isinstance(err, nonfinite.NonFiniteLossError):
        return str(err), EXIT_DIVERGED
    if isinstance(err, _project_error_types()):
        return str(err), EXIT_USER_ERROR
    if isinstance(err, OSError) and err.filename is not None:
        names = " -> ".join(str(n) for n in (err.filename, err.filename2) if n is not None)
        return f"{names}: {err.strerror or err}", EXIT_USER_ERROR
    if isinstance(err, (ValueError, OSError)) and _raised_in_input_code(err):
        return str(err), EXIT_USER_ERROR  # e.g. "<dir> exists and is not a prepared data dir"
    return None


def report_user_error(err: BaseException, prog: str = "") -> int | None:
    """Print `error: ...` for a user error and return its exit status; None when `err` must be re-raised."""
    found = None if os.environ.get(DEBUG_ENV) else user_error(err)
    if found is None:
        return None
    message, status = found
    print(f"{prog}error: {message}", file=sys.stderr)
    return status
