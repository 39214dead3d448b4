"""Fixtures `slurm_cluster` (session: a real one-node SLURM cluster: munged, slurmctld, slurmd) and
`two_node_cluster` (module: the same with two slurmds, nodes n1/n2 on 127.0.0.2/127.0.0.3, its own slurm.conf and
ports, so both can run at once).

Brought up by `scripts/slurm_local.sh up` in a temp state dir on free ports, torn down by `down`, which cancels the
jobs, stops exactly the PIDs `up` started and (two nodes) removes the n1/n2 lines it put into /etc/hosts. Import
`slurm_cluster_fixture` / `two_node_cluster_fixture` into a test module to use them.

Missing Debian packages are installed once per machine (`scripts/install_slurm.sh`, under a file lock that every
pytest-xdist worker and every concurrent test session takes, so a second worker waits for the first instead of
losing apt's dpkg lock). A test that cannot get a cluster (not root, packages not installable, bring-up failed)
FAILS: a skip would count as a pass. `PIPELINE_SKIP_SLURM=1` is the one way to skip them, on purpose (a machine
that is not meant to run SLURM). `PIPELINE_SLURM_INSTALL` replaces the install command (tests use a stand-in).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "slurm_local.sh"
INSTALL = ROOT / "scripts" / "install_slurm.sh"
SKIP_ENV = "PIPELINE_SKIP_SLURM"  # =1: skip the SLURM tests (the only way they skip)
INSTALL_ENV = "PIPELINE_SLURM_INSTALL"  # the install command, default INSTALL
# one installer per machine at a time: every xdist worker and every concurrent session takes this lock
INSTALL_LOCK = Path(tempfile.gettempdir()) / "pipeline-install-slurm.lock"
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "setpriv")
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
_FIELD = re.compile(r"(\w[\w/:]*)=(\S*)")


@dataclass
class LocalSlurm:
    """Handle on the running test cluster; `SLURM_CONF` points at it while the fixture is active."""

    state_dir: Path
    nodes: tuple[str, ...] = ()  # node names (two-node cluster: ("n1", "n2"))

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job -o` fields of a job (first record), {} when the controller does not know it."""
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
        lines = out.stdout.splitlines()
        return dict(_FIELD.findall(lines[0])) if out.returncode == 0 and lines else {}

    def wait(self, job_id: str, states: set[str], timeout: float = 60) -> dict[str, str]:
        """Poll until the job is in one of `states`; fail at once (with the log's tail) if it ends otherwise."""
        deadline = time.monotonic() + timeout
        record: dict[str, str] = {}
        while time.monotonic() < deadline:
            record = self.job(job_id)
            state = record.get("JobState")
            if state in states:
                return record
            if state in ENDED:
                break
            time.sleep(0.2)
        log = Path(record["StdOut"]) if record.get("StdOut") else None
        tail = log.read_text()[-3000:] if log and log.is_file() else "(no log)"
        pytest.fail(
            f"job {job_id}: {record.get('JobState')}, expected {states} (waited <= {timeout} s)\n{tail}"
        )

    def release(self, job_id: str) -> None:
        """Start a requeued job in 2 s instead of after SLURM's requeue delay.

        Not `now`: slurmd revokes the killed run's job credential with one-second resolution, and a restart
        launched within the same second carries a credential that counts as revoked ("Job credential revoked"),
        so the job ends FAILED before its script runs (seen once in a full test run)."""
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now+2"], check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _missing() -> list[str]:
    return [p for p in PROGRAMS if not shutil.which(p)]


def install_once(lock_path: Path | None = None) -> str | None:
    """Install the SLURM packages unless present, one installer at a time on this machine; None when they are
    there, else why not. The check is repeated under the lock: a worker that waited finds them installed."""
    if not _missing():
        return None
    install = os.environ.get(INSTALL_ENV) or str(INSTALL)
    # flock'd; released when closed, or when this process dies
    with open(lock_path or INSTALL_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _missing():
            return None
        done = subprocess.run([install], capture_output=True, text=True)
    missing = _missing()
    if done.returncode != 0 or missing:
        why = (done.stderr or done.stdout).strip()[-500:]
        return f"SLURM packages missing ({', '.join(missing)}) and {install} exited {done.returncode}: {why}"
    return None


def cannot_run_reason() -> str | None:
    """Why this machine cannot host the test cluster, or None (installing the packages first if needed)."""
    if os.geteuid() != 0:
        return "SLURM integration tests need root (munged/slurmd start as root)"
    return install_once()


def _free_port_pair() -> int:
    """A free port p with p + 1 free too (the two-node cluster's n2 listens on SLURM_LOCAL_SLURMD_PORT + 1)."""
    for _ in range(50):
        port = _free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


def first_job_id(state: Path, nodes: int) -> int:
    """Lightning's MASTER_PORT is 15000 + the job id's last 4 digits, and each pytest-xdist worker runs its own
    clusters at the same time as the other's: give worker k the ids 2000k + 1 .. 2000k + 999 (one-node cluster,
    one a session) and 2000k + 1000 + 100j (two-node clusters, one a module, j from the state path so consecutive
    modules do not reuse ports still closing). Distinct last 4 digits for up to 5 workers."""
    worker = int(re.sub(r"\D", "", os.environ.get("PYTEST_XDIST_WORKER", "")) or 0)
    if nodes == 1:
        return 2000 * worker + 1
    return 2000 * worker + 1000 + 100 * (zlib.crc32(str(state).encode()) % 9)


@contextmanager
def local_cluster(state: Path, nodes: int) -> Iterator[LocalSlurm]:
    """`slurm_local.sh up STATE NODES` on free ports with `SLURM_CONF` set while inside; `down` on the way out."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: SLURM tests skipped on request")
    reason = cannot_run_reason()
    if reason:
        pytest.fail(f"no local SLURM cluster: {reason} (set {SKIP_ENV}=1 to skip the SLURM tests on purpose)")
    env = {
        **os.environ,
        "SLURM_LOCAL_CTLD_PORT": str(_free_port()),
        "SLURM_LOCAL_SLURMD_PORT": str(_free_port_pair()),
        "SLURM_LOCAL_FIRST_JOB_ID": str(first_job_id(state, nodes)),
    }
    up = subprocess.run([str(SCRIPT), "up", str(state), str(nodes)], capture_output=True, text=True, env=env)
    if up.returncode != 0:  # root and packages present: a failed bring-up is a bug, not a reason to skip
        subprocess.run([str(SCRIPT), "down", str(state)], capture_output=True)
        pytest.fail(f"slurm_local.sh up failed ({up.returncode}): {up.stderr}\nlogs in {state}")
    names = ("n1", "n2") if nodes == 2 else (socket.gethostname().split(".")[0],)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(state / "slurm.conf"))
        try:
            yield LocalSlurm(state, names)
        finally:
            subprocess.run([str(SCRIPT), "down", str(state)], capture_output=True, timeout=120)


@pytest.fixture(scope="session", name="slurm_cluster")
def slurm_cluster_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    with local_cluster(tmp_path_factory.mktemp("slurm"), 1) as cluster:
        yield cluster


@pytest.fixture(scope="module", name="two_node_cluster")
def two_node_cluster_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    """Two slurmds (n1, n2) for one test module; the n1/n2 lines are out of /etc/hosts once it is torn down."""
    state = tmp_path_factory.mktemp("slurm2")
    with local_cluster(state, 2) as cluster:
        yield cluster
    left = [line for line in Path("/etc/hosts").read_text().splitlines() if str(state) in line]
    if left:
        pytest.fail(f"/etc/hosts still has the two-node cluster's lines after `down`: {left}")
