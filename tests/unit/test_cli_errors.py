"""One clear line for every user error, a traceback for every bug.

Through `pipeline.cli.main` in-process: `train` with bad files and directories, `evaluate` with missing or damaged
checkpoints, `submit` with bad flags or a bad run config. Each user error is `error: ...` naming the file, key or
flag, exit status 2, no traceback; an internal bug still raises; PIPELINE_DEBUG=1 raises everything.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.cli import main as cli
from pipeline.config import ConfigError, ConfigWarning
from pipeline.training.user_errors import user_error
from tests.conftest import ROOT, TINY

CONFIGS = [f"--config={p}" for p in [*TINY, ROOT / "configs/tiny/lstm.yaml"]]


def train(tmp_path: Path, *extra: str) -> list[str]:
    return ["train", *CONFIGS, f"run_dir={tmp_path / 'run'}", "train.bleu_samples=0", *extra]


def one_error_line(capsys: pytest.CaptureFixture[str], *named: str) -> str:
    # Lightning's log handler may still hold an earlier test's closed capture stream: Python's logging then
    # prints "--- Logging error ---" with a traceback of its own write, which is not ours
    err = re.sub(
        r"--- Logging error ---.*?\nArguments: [^\n]*\n", "", capsys.readouterr().err, flags=re.DOTALL
    )
    lines = [line for line in err.splitlines() if re.match(r"pipeline [a-z ]+: error: ", line)]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err
    for text in named:
        assert text in lines[0], f"{text!r} not named in {lines[0]!r}"
    return lines[0]


# --- pipeline train ------------------------------------------------------------------------------------------
def _bad_config(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.yaml"
    if kind == "binary":
        path.write_bytes(bytes(range(256)))
    elif kind == "utf16":
        path.write_text("train:\n  max_steps: 3\n", encoding="utf-16")
    elif kind == "directory":
        path.mkdir()
    elif kind == "yaml_error":
        path.write_text("train: {max_steps: [\n")
    return path  # "missing": never created


@pytest.mark.parametrize("kind", ["binary", "utf16", "directory", "yaml_error", "missing"])
def test_unreadable_config_file_is_named(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _bad_config(tmp_path, kind)
    assert cli(train(tmp_path, f"--config={path}")) == 2
    one_error_line(capsys, str(path))


@pytest.mark.parametrize("override", ["train.max_steps=[", "train.max_steps={a: ", "model=[1", "optim.lr=*x"])
def test_yaml_error_inside_an_override_is_named(
    override: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(train(tmp_path, override)) == 2
    one_error_line(capsys, override.split("=")[0])


@pytest.mark.parametrize(
    ("overrides", "named"),
    [(["model.max_len=8"], ["model.max_len=8", "data.max_len=32"]),
     (["model.max_len=40", "train.decode_max_len=60"], ["train.decode_max_len=60", "model.max_len=40"])],
)  # fmt: skip
def test_transformer_position_table_is_checked_at_start(
    overrides: list[str], named: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sequences or decoding past the Transformer's position table: refused before any data is read (these were a
    ValueError at the first long batch, or in the final evaluation after the whole run)."""
    configs = [f"--config={p}" for p in [*TINY, ROOT / "configs/tiny/transformer.yaml"]]
    assert cli(["train", *configs, f"run_dir={tmp_path / 'run'}", "train.bleu_samples=4", *overrides]) == 2
    one_error_line(capsys, *named)
    assert not (tmp_path / "run").exists()


def test_halving_that_never_happens_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--print-config", *CONFIGS, "optim.schedule=halving", "optim.halve_every=2",
            "optim.halve_after=100", "train.max_steps=6"]  # fmt: skip
    with pytest.warns(
        ConfigWarning, match=r"optim\.halve_after=100 >= train\.max_steps=6: the lr never halves"
    ):
        assert cli(argv) == 0


@pytest.mark.parametrize("case", ["data_dir_is_a_file", "data_dir_unrelated_folder", "run_dir_under_a_file"])
def test_bad_directories_are_named(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "target"
    if case == "data_dir_is_a_file":
        target.write_text("not a data dir\n")
        extra = [f"data.dir={target}"]
    elif case == "data_dir_unrelated_folder":
        target.mkdir()
        (target / "holiday.jpg").write_bytes(b"\xff\xd8")
        extra = [f"data.dir={target}"]
    else:
        target.write_text("a file\n")
        extra = [f"run_dir={target / 'run'}"]
    assert cli(train(tmp_path, *extra)) == 2
    one_error_line(capsys, str(target))
    if case == "data_dir_unrelated_folder":
        assert sorted(p.name for p in target.iterdir()) == ["holiday.jpg"], "the user's folder was changed"


@contextmanager
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory this process cannot create entries in, root included (CI runs as root).

    Not root: mode 0555. Root ignores modes but not the immutable flag (`chattr +i`, ext4/xfs/btrfs; tmpfs from
    Linux 6.0). Dropping the effective uid instead does not work here: the interpreter lives under /root, so
    `nobody` cannot import the stdlib modules the command loads lazily.
    """
    parent = tmp_path / "ro"
    parent.mkdir()
    if os.geteuid() != 0:
        parent.chmod(0o555)
        try:
            yield parent
        finally:
            parent.chmod(0o755)
        return
    flagged = subprocess.run(["chattr", "+i", str(parent)], capture_output=True, text=True)
    if flagged.returncode != 0:
        pytest.fail(f"running as root needs `chattr +i` on {parent}'s filesystem: {flagged.stderr.strip()}")
    try:
        yield parent
    finally:
        subprocess.run(["chattr", "-i", str(parent)], check=True)


def test_read_only_run_dir_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with read_only_dir(tmp_path) as parent:
        with pytest.raises(OSError):  # the directory really refuses a new entry, for this user too
            (parent / "probe").mkdir()
        assert cli(["train", *CONFIGS, f"run_dir={parent / 'run'}"]) == 2
    one_error_line(capsys, str(parent / "run"))


def test_pipeline_debug_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_DEBUG", "1")
    with pytest.raises(ConfigError, match="train.max_stps"):
        cli(train(tmp_path, "train.max_stps=3"))


@pytest.mark.parametrize(
    "bug", [ValueError("an internal bug"), KeyError("state"), OSError("no filename"), RuntimeError("x")]
)
def test_an_internal_bug_keeps_its_traceback(
    bug: Exception, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.training.trainer as trainer

    def broken_fit(cfg, resume="auto", **kwargs):
        raise bug

    monkeypatch.setattr(trainer, "fit", broken_fit)
    with pytest.raises(type(bug)):
        cli(train(tmp_path))


def test_value_error_is_a_user_error_only_from_input_code() -> None:
    from pipeline.data.sources.bible import parse_bible_spec

    with pytest.raises(ValueError) as from_data:
        parse_bible_spec("4-4")
    assert user_error(from_data.value) == (str(from_data.value), 2)
    try:
        int("not a number")  # a ValueError from anywhere else: a bug
    except ValueError as err:
        assert user_error(err) is None
    assert user_error(PermissionError(13, "Permission denied", "/runs/x")) == (
        "/runs/x: Permission denied",
        2,
    )
    assert user_error(OSError("no file named")) is None


def test_help_documents_pipeline_debug_and_resume_fresh(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli(["--help"])
    assert "PIPELINE_DEBUG=1" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "fresh (alias: never)" in out and "previous-<time>" in out


# --- pipeline evaluate -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "case", ["missing_file", "garbage_file", "bad_sidecar", "missing_run_dir", "empty_run"]
)
def test_evaluate_names_the_checkpoint_or_run_dir(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints/last.ckpt"
    argv = ["evaluate", str(run), "--checkpoint", str(tmp_path / "missing.ckpt")]
    named = [f"checkpoint not found: {tmp_path / 'missing.ckpt'}"]
    if case == "garbage_file":
        ckpt.write_bytes(b"\x00garbage" * 10)
        argv[-1], named = str(ckpt), [str(ckpt), "not a readable checkpoint"]
    elif case == "bad_sidecar":
        ckpt.write_bytes(b"\x00garbage" * 10)
        (run / "checkpoints/last.ckpt.meta.json").write_text('{"sha256": "0", "bytes": 80}')
        argv[-1], named = str(ckpt), [str(ckpt), "checksum mismatch"]
    elif case == "missing_run_dir":
        argv, named = ["evaluate", str(tmp_path / "nope")], [f"run directory not found: {tmp_path / 'nope'}"]
    elif case == "empty_run":
        argv, named = ["evaluate", str(run)], [f"no checkpoint in {run / 'checkpoints'}"]
    assert cli(argv) == 2
    one_error_line(capsys, *named)


# --- pipeline submit -------------------------------------------------------------------------------------------
@pytest.fixture
def submit_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("PIPELINE_CLUSTER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def submit(*argv: str) -> list[str]:
    return ["submit", "--dry-run", *CONFIGS, *argv]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--gpus-per-node", "-1"), ("--nodes", "0"), ("--ntasks-per-node", "0"), ("--cpus-per-task", "0"),
        ("--signal-seconds", "0"), ("--time", "soon"), ("--time", "1:2:3:4"), ("--time", "10h"),
        ("--time", "-5"), ("--time", "2-"), ("--mem", "lots"), ("--mem", "64GB"), ("--mem", "-1G"),
    ],
)  # fmt: skip
def test_bad_submit_flag_is_named_and_nothing_rendered(
    flag: str, value: str, submit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(submit(f"{flag}={value}")) == 2
    one_error_line(capsys, flag, value)
    assert not list(submit_dir.rglob("*.sbatch"))


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--time", "90"), ("--time", "30:00"), ("--time", "24:00:00"), ("--time", "1-12"), ("--time", "2-00:00:00"),
     ("--time", "UNLIMITED"), ("--mem", "64G"), ("--mem", "16000"), ("--gpus-per-node", "0")],
)  # fmt: skip
def test_valid_slurm_values_render(
    flag: str, value: str, submit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(submit(f"{flag}={value}")) == 0
    if flag != "--gpus-per-node":
        assert f"#SBATCH {flag}={value}" in capsys.readouterr().out


def test_bad_cluster_file_value_names_file_and_key(
    submit_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = submit_dir / "cluster.yaml"
    cluster.write_text("time: soon\n")
    monkeypatch.setenv("PIPELINE_CLUSTER_CONFIG", str(cluster))
    assert cli(submit()) == 2
    one_error_line(capsys, f"{cluster}: key 'time'", "'soon'")


@pytest.mark.parametrize(
    ("override", "named"),
    [("train.max_stps=3", "train.max_stps"), ("optim.lr=-1", "optim.lr"), ("model.d_model=0", "d_model"),
     ("train.max_steps=[", "train.max_steps")],
)  # fmt: skip
def test_submit_validates_the_run_config_before_rendering(
    override: str, named: str, submit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(submit(override)) == 2
    one_error_line(capsys, named)
    assert not list(submit_dir.rglob("*.sbatch"))


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    """`pipeline sweep --dry-run | head`: when the reader has gone, exit 141 without a BrokenPipeError traceback."""
    import subprocess
    import sys

    grid = str(ROOT / "configs/sweeps/tiny.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "sweep", "--grid", grid, "--dry-run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)  # fmt: skip
    proc.stdout.close()  # the reader leaves before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


@pytest.mark.parametrize(
    "override, said, not_loaded",
    [  # Lightning alone took ~5 s of the 10 s answer; torch and the models 7.5 s of a model key's 10 s
        ("train.max_stepz=3", "unknown key 'train.max_stepz'", "lightning"),
        (
            "model.d_modle=8",
            "did you mean 'model.d_model'",
            "torch",
        ),  # checked by pipeline.models.configs alone
    ],
)
def test_a_config_error_is_reported_before_the_heavy_imports(
    override: str, said: str, not_loaded: str
) -> None:
    """A mistyped key is answered before the training stack (or, for a model key, torch itself) is imported."""
    import subprocess
    import sys

    code = ("import sys; from pipeline.cli import main; "
            f"rc = main(['train', '--config', {str(TINY[0])!r}, {override!r}]); "
            f"print(rc, {not_loaded!r} in sys.modules)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert said in proc.stderr, proc.stderr[-2000:]
    assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr[-2000:]
