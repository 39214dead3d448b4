"""A checkpoint PATH given by hand, in every damaged form, to every command that takes one.

Generated: each form below (a sidecar or none; contents garbage, cut short, foreign, or a directory; a sidecar that
claims another step; a path that does not exist or lies under a file) x each command (`train --resume PATH`,
`evaluate --checkpoint PATH`, `export --checkpoint PATH`). A damaged form must end in exit 2 and one
`pipeline COMMAND: error:` line naming the path and why, with no traceback; an intact one (with or without its
sidecar) must succeed. Unchecked, the damaged ones reach Lightning or torch and end in a zip-archive or
unpickling traceback. In-process calls of `pipeline.cli.main` on copies of the session's trained run (tests/integration/conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from pipeline.cli import main as cli
from pipeline.training.checkpoint_files import meta_path, write_metadata
from tests.integration.test_damaged_state import train_argv
from tests.unit.test_cli_errors import one_error_line


def _copy(run: Path, out: Path, sidecar: bool = True) -> Path:
    shutil.copy(run / "checkpoints/step=4.ckpt", out)
    if sidecar:
        shutil.copy(meta_path(run / "checkpoints/step=4.ckpt"), meta_path(out))
    return out


def _sealed(path: Path) -> Path:
    """A sidecar that matches the file as it now is (the way a copy tool that rewrites metadata would leave it)."""
    write_metadata(path, 4, 1000, "0" * 16, 1)
    return path


def _truncated(run: Path, out: Path, sidecar: bool) -> Path:
    _copy(run, out, sidecar=False)
    os.truncate(out, out.stat().st_size // 2)
    return _sealed(out) if sidecar else out


def _claims(run: Path, out: Path, step: int) -> Path:
    _copy(run, out)
    meta = json.loads(meta_path(out).read_text())
    meta_path(out).write_text(json.dumps({**meta, "step": step}))
    return out


def _write(out: Path, data: bytes) -> Path:
    out.write_bytes(data)
    return out


def _foreign(out: Path) -> Path:
    torch.save({"weights": torch.zeros(3)}, out)
    return out


def _legacy(run: Path, out: Path) -> Path:
    """The real checkpoint re-saved in torch's pre-1.6 tar format (weights_only loading refuses it)."""
    state = torch.load(run / "checkpoints/step=4.ckpt", map_location="cpu", weights_only=False)
    torch.save(state, out, _use_new_zipfile_serialization=False)
    return out


def _under_a_file(out: Path) -> Path:
    out.parent.joinpath("a_file").write_text("x")
    return out.parent / "a_file" / "x.ckpt"


# form -> (make the path from (trained run, a fresh file path), the reason the error line gives; None: it works)
FORMS: dict[str, tuple[Callable[[Path, Path], Path], str | None]] = {
    "intact": (lambda t, o: _copy(t, o), None),
    "intact_no_sidecar": (lambda t, o: _copy(t, o, sidecar=False), None),
    "garbage_no_sidecar": (lambda t, o: _write(o, b"\x00garbage" * 10), "not a readable checkpoint"),
    "garbage_sealed": (lambda t, o: _sealed(_write(o, b"\x00garbage" * 10)), "not a readable checkpoint"),
    "empty_no_sidecar": (lambda t, o: _write(o, b""), "not a readable checkpoint"),
    "truncated_no_sidecar": (lambda t, o: _truncated(t, o, False), "not a readable checkpoint"),
    "truncated_sealed": (lambda t, o: _truncated(t, o, True), "not a readable checkpoint"),
    "sidecar_claims_later_step": (lambda t, o: _claims(t, o, 99), "metadata says step 99"),
    "sidecar_checksum_wrong": (lambda t, o: _claims(t, o, 4) and _flip(o), "checksum mismatch"),
    "foreign_torch_file": (lambda t, o: _foreign(o), "not a checkpoint of this pipeline"),
    "legacy_tar_format": (_legacy, "not a readable checkpoint"),
    "directory": (lambda t, o: o.mkdir() or o, "not a DeepSpeed checkpoint"),
    "nonexistent": (lambda t, o: o, ""),
    "under_a_file": (lambda t, o: _under_a_file(o), ""),
}  # fmt: skip


def _flip(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _argv(command: str, run: Path, tiny_data: Path, tmp_path: Path, path: Path) -> list[str]:
    if command == "train":
        argv = train_argv(tiny_data, tmp_path / "resumed")
        return argv[:1] + ["--resume", str(path)] + argv[1:]
    if command == "evaluate":
        return ["evaluate", str(run), "--checkpoint", str(path), "--pairs", "2"]
    return ["export", str(run), "--checkpoint", str(path), "--out", str(tmp_path / "export.pt")]


@pytest.mark.parametrize("command", ["train", "evaluate", "export"])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_checkpoint_path_in_every_form(
    form: str,
    command: str,
    trained: Path,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make, reason = FORMS[form]
    (tmp_path / "elsewhere").mkdir()
    path = make(trained, tmp_path / "elsewhere" / "given.ckpt")
    status = cli(_argv(command, trained, tiny_data, tmp_path, path))
    if reason is None:
        assert status == 0, capsys.readouterr().err[-3000:]
        if form == "intact_no_sidecar":
            assert "no metadata sidecar" in capsys.readouterr().err  # read unverified, with a warning
        return
    assert status == 2
    one_error_line(capsys, str(path), reason)
