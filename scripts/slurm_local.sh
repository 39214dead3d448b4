#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for integration tests and trying `pipeline submit` by hand.
#
#   scripts/slurm_local.sh up   STATE_DIR   # write STATE_DIR/slurm.conf, start munged (if none runs), slurmctld,
#                                           # slurmd; wait until the node is idle; record their PIDs
#   scripts/slurm_local.sh down STATE_DIR   # cancel every job, then stop exactly the PIDs `up` recorded
#
# Then point the SLURM commands at it:  export SLURM_CONF=STATE_DIR/slurm.conf
# Needs root and Debian's slurmctld/slurmd/slurm-client/munge (scripts/install_slurm.sh). Why each slurm.conf
# setting is there: ../../shared/notes/slurm-local.md (measured on this machine).
set -euo pipefail

usage() { echo "usage: $0 up|down STATE_DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
state=$(realpath -m "$2")
pids="$state/pids"

alive() {  # a PID counts as running unless gone or a zombie (killed daemons linger as zombies for seconds)
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$st" != Z ]
}

stop_pid() {  # stop one recorded PID, but only if it is still the program we started (PIDs get reused)
  local name=$1 pid=$2 i
  alive "$pid" || return 0
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do alive "$pid" || return 0; sleep 0.1; done
  echo "slurm_local: $name ($pid) ignored SIGTERM; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

up() {
  for prog in munged slurmctld slurmd sinfo; do
    command -v "$prog" >/dev/null || { echo "slurm_local: $prog not found; run scripts/install_slurm.sh" >&2; exit 3; }
  done
  [ "$(id -u)" = 0 ] || { echo "slurm_local: must run as root (slurmd starts jobs as their user)" >&2; exit 3; }
  if [ -f "$pids" ]; then
    echo "slurm_local: $pids exists: a cluster from this state dir may still run; '$0 down $state' first" >&2
    exit 3
  fi
  rm -rf "$state/ctld" "$state/spool"  # a fresh controller numbers jobs from 1 and remembers no old jobs
  mkdir -p "$state/ctld" "$state/spool"
  : >"$pids"

  if ! (munge -n | unmunge) >/dev/null 2>&1; then
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
      dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
      chown munge:munge /etc/munge/munge.key
      chmod 0400 /etc/munge/munge.key
    fi
    # setpriv execs munged itself, so $! is munged's PID (su/runuser would fork and leave us their PID).
    setpriv --reuid=munge --regid=munge --init-groups munged -F >"$state/munged.out" 2>&1 &
    echo "munged $!" >>"$pids"
    for _ in $(seq 50); do (munge -n | unmunge) >/dev/null 2>&1 && break; sleep 0.1; done
    (munge -n | unmunge) >/dev/null 2>&1 || { echo "slurm_local: munged did not start: $state/munged.out" >&2; exit 4; }
  fi

  local host node cpus mem
  host=$(hostname -s)
  node=$(slurmd -C | head -1)  # "NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105"
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$((mem * 9 / 10))
  cat >"$state/slurm.conf" <<EOF
# Written by scripts/slurm_local.sh for a one-node test cluster.
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${SLURM_LOCAL_CTLD_PORT:-6817}
SlurmdPort=${SLURM_LOCAL_SLURMD_PORT:-6818}
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
SchedulerParameters=sched_interval=2
KillWait=5
NodeName=${node#NodeName=} NodeAddr=127.0.0.1
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  sed -i "s/ UpTime=[^ ]*//; s/RealMemory=[0-9]*/RealMemory=$mem/" "$state/slurm.conf"
  export SLURM_CONF="$state/slurm.conf"

  slurmctld -D -f "$SLURM_CONF" >"$state/slurmctld.out" 2>&1 &
  echo "slurmctld $!" >>"$pids"
  slurmd -D -f "$SLURM_CONF" >"$state/slurmd.out" 2>&1 &
  echo "slurmd $!" >>"$pids"

  for _ in $(seq 300); do
    [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && { echo "export SLURM_CONF=$SLURM_CONF"; return 0; }
    sleep 0.1
  done
  echo "slurm_local: node not idle after 30 s: sinfo says '$(sinfo -h -o %T 2>&1)'; logs in $state" >&2
  down
  exit 4
}

down() {
  [ -f "$pids" ] || { echo "slurm_local: nothing recorded in $pids" >&2; return 0; }
  export SLURM_CONF="$state/slurm.conf"
  # Jobs first: their processes outlive slurmd otherwise. KillWait=5 bounds how long a job may ignore SIGTERM.
  if squeue -h -o %A >/dev/null 2>&1; then
    squeue -h -o %A | sort -u | xargs -r scancel 2>/dev/null || true
    for _ in $(seq 150); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  local name pid
  for name in slurmd slurmctld munged; do  # reverse order of start
    while read -r n pid; do [ "$n" = "$name" ] && stop_pid "$name" "$pid"; done <"$pids"
  done
  rm -f "$pids"
}

case $action in
  up) up ;;
  down) down ;;
  *) usage ;;
esac
