#!/usr/bin/env bash
# Install Debian's SLURM and munge packages for the local test cluster (scripts/slurm_local.sh).
# Idempotent: does nothing when the programs are already there. Needs root; used by `make setup` and CI, and by the
# SLURM test fixture (tests/integration/slurm_cluster.py), which runs it once per machine under its own file lock.
# An apt/dpkg run outside the tests (unattended upgrades) is waited for (DPkg::Lock::Timeout) rather than lost to.
set -euo pipefail

need=()
for prog in slurmctld slurmd sbatch munged; do command -v "$prog" >/dev/null || need+=("$prog"); done
if [ ${#need[@]} -eq 0 ]; then
  echo "install_slurm: slurmctld, slurmd, sbatch and munged already installed"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install_slurm: missing ${need[*]}; installing needs root (apt-get)" >&2
  exit 3
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q -o DPkg::Lock::Timeout=300 slurmctld slurmd slurm-client munge
