"""The SLURM packages are installed once per machine, under a lock every test worker takes (two pytest-xdist
workers both running apt-get lost dpkg's lock and skipped the multi-node tests), and a test that cannot get a
cluster fails unless PIPELINE_SKIP_SLURM=1 asks for the skip. The install command is a stand-in here
(PIPELINE_SLURM_INSTALL): it sleeps, logs its run and "installs" stub programs into a PATH of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration import slurm_cluster
from tests.integration.slurm_cluster import INSTALL_ENV, PROGRAMS, SKIP_ENV, install_once, local_cluster

ROOT = Path(__file__).resolve().parents[2]


def stand_in(tmp_path: Path, *, works: bool = True) -> tuple[Path, Path, Path]:
    """(install script, its log, the bin dir it fills): a slow install that others must wait for."""
    bin_dir, log = tmp_path / "bin", tmp_path / "install.log"
    bin_dir.mkdir()
    script = tmp_path / "install.sh"
    stubs = " ".join(PROGRAMS) if works else ""
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        PATH=/usr/bin:/bin
        echo "install by $PPID" >> {log}
        sleep 1
        for p in {stubs}; do printf '#!/bin/sh\\n' > {bin_dir}/$p; chmod +x {bin_dir}/$p; done
        {"exit 0" if works else "echo 'E: Could not get lock /var/lib/dpkg/lock-frontend' >&2; exit 100"}
        """))  # fmt: skip
    script.chmod(0o755)
    return script, log, bin_dir


CONTENDER = """
import os, sys, time
from pathlib import Path
from tests.integration.slurm_cluster import _missing, install_once
ready, lock = Path(sys.argv[1]), Path(sys.argv[2])
(ready / str(os.getpid())).touch()
while len(list(ready.iterdir())) < 2:  # a barrier: both contenders call install_once at the same moment
    time.sleep(0.01)
print("missing before:", bool(_missing()), "result:", install_once(lock), flush=True)
"""


def test_two_workers_at_once_install_once_and_both_get_the_programs(tmp_path: Path) -> None:
    script, log, bin_dir = stand_in(tmp_path)
    ready = tmp_path / "ready"
    ready.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), INSTALL_ENV: str(script), "PATH": str(bin_dir)}
    argv = [sys.executable, "-c", CONTENDER, str(ready), str(tmp_path / "install.lock")]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    # both found the programs missing, both end with them installed, and the install ran once
    assert [out.strip() for out, _ in outs] == ["missing before: True result: None"] * 2
    assert len(log.read_text().splitlines()) == 1, log.read_text()
    assert sorted(p.name for p in bin_dir.iterdir()) == sorted(PROGRAMS)


def test_installed_programs_mean_no_install_and_a_failed_install_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, log, bin_dir = stand_in(tmp_path, works=False)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv(INSTALL_ENV, str(script))
    why = install_once(tmp_path / "install.lock")
    assert why and "Could not get lock" in why and str(script) in why and "exited 100" in why
    for p in PROGRAMS:
        (bin_dir / p).write_text("#!/bin/sh\n")
        (bin_dir / p).chmod(0o755)
    log.unlink()
    assert install_once(tmp_path / "install.lock") is None and not log.exists()


def test_no_cluster_fails_the_test_unless_the_skip_is_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, _, bin_dir = stand_in(tmp_path, works=False)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv(INSTALL_ENV, str(script))
    monkeypatch.setattr(slurm_cluster, "INSTALL_LOCK", tmp_path / "install.lock")
    monkeypatch.delenv(SKIP_ENV, raising=False)
    failed = pytest.raises(pytest.fail.Exception, match=f"no local SLURM cluster: .*set {SKIP_ENV}=1 to skip")
    with failed, local_cluster(tmp_path / "state", 1):
        pass
    monkeypatch.setenv(SKIP_ENV, "1")
    with pytest.raises(pytest.skip.Exception, match=f"{SKIP_ENV}=1"), local_cluster(tmp_path / "state", 1):
        pass
