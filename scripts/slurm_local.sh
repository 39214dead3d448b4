#!/usr/bin/env bash
# A real SLURM cluster on this machine, for integration tests and trying `pipeline submit` by hand.
#
#   scripts/slurm_local.sh up   STATE_DIR [NODES]  # write STATE_DIR/slurm.conf, start munged (if none runs),
#                                                  # slurmctld and NODES slurmds (1 or 2); wait until every node
#                                                  # is idle; record their PIDs
#   scripts/slurm_local.sh down STATE_DIR          # cancel every job, stop exactly the PIDs `up` recorded, and
#                                                  # take out the /etc/hosts lines `up` added
#
# Then point the SLURM commands at it:  export SLURM_CONF=STATE_DIR/slurm.conf
# NODES=2: two slurmds on one host, `slurmd -N n1` and `slurmd -N n2`, on 127.0.0.2 / 127.0.0.3 with their own port,
# spool, pid and log file; n1/n2 go into /etc/hosts while the cluster runs (Lightning takes the master address from
# the node list, so the names must resolve). Default ports differ from the one-node mode's (6917-6919 vs 6817-6818)
# so both clusters can run at once; SLURM_LOCAL_CTLD_PORT / SLURM_LOCAL_SLURMD_PORT (n2: +1) override them, and
# SLURM_LOCAL_FIRST_JOB_ID the first job id (Lightning derives MASTER_PORT from the job id). n2's slurmd runs without
# the capabilities that let root ignore file modes (see below).
# Needs root and Debian's slurmctld/slurmd/slurm-client/munge (scripts/install_slurm.sh). Why each slurm.conf
# setting is there: ../../shared/notes/slurm-local.md (measured on this machine).
set -euo pipefail

usage() { echo "usage: $0 up STATE_DIR [1|2] | down STATE_DIR" >&2; exit 2; }
[ $# -eq 2 ] || [ $# -eq 3 ] || usage
action=$1
state=$(realpath -m "$2")
nodes=${3:-1}
[ "$nodes" = 1 ] || [ "$nodes" = 2 ] || usage
pids="$state/pids"
hosts_tag="# slurm_local.sh $state"  # marks the /etc/hosts lines this cluster added, so `down` removes only those

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

remove_hosts() {  # rewrite /etc/hosts in place (it may be a bind mount, so no `sed -i` rename) without our lines
  grep -qF "$hosts_tag" /etc/hosts 2>/dev/null || return 0
  local kept
  kept=$(grep -vF "$hosts_tag" /etc/hosts || true)
  printf '%s\n' "$kept" >/etc/hosts
}

add_hosts() {
  remove_hosts
  printf '127.0.0.2 n1 %s\n127.0.0.3 n2 %s\n' "$hosts_tag" "$hosts_tag" >>/etc/hosts
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
  mem=$((mem * 9 / 10 / nodes))
  local ctld_port slurmd_port spool=spool pidfile=slurmd.pid logfile=slurmd.log
  if [ "$nodes" = 1 ]; then
    ctld_port=${SLURM_LOCAL_CTLD_PORT:-6817} slurmd_port=${SLURM_LOCAL_SLURMD_PORT:-6818}
  else  # one spool/pid/log per slurmd: SLURM expands %n to the node name
    ctld_port=${SLURM_LOCAL_CTLD_PORT:-6917} slurmd_port=${SLURM_LOCAL_SLURMD_PORT:-6918}
    spool=spool/%n pidfile=%n.pid logfile=%n.log
  fi
  cat >"$state/slurm.conf" <<EOF
# Written by scripts/slurm_local.sh for a $nodes-node test cluster.
ClusterName=local$nodes
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
AuthInfo=cred_expire=10
FirstJobId=${SLURM_LOCAL_FIRST_JOB_ID:-1}
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/$spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/$pidfile
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/$logfile
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
EOF
  local spec=${node#NodeName=* }  # "CPUs=2 Boards=1 ... RealMemory=24105"
  spec=$(sed "s/ *UpTime=[^ ]*//; s/RealMemory=[0-9]*/RealMemory=$mem/" <<<"$spec")
  if [ "$nodes" = 1 ]; then
    echo "NodeName=$host $spec NodeAddr=127.0.0.1" >>"$state/slurm.conf"
  else
    echo "NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.2 Port=$slurmd_port $spec" >>"$state/slurm.conf"
    echo "NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.3 Port=$((slurmd_port + 1)) $spec" >>"$state/slurm.conf"
  fi
  echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >>"$state/slurm.conf"
  export SLURM_CONF="$state/slurm.conf"

  slurmctld -D -f "$SLURM_CONF" >"$state/slurmctld.out" 2>&1 &
  echo "slurmctld $!" >>"$pids"
  if [ "$nodes" = 1 ]; then
    slurmd -D -f "$SLURM_CONF" >"$state/slurmd.out" 2>&1 &
    echo "slurmd $!" >>"$pids"
  else
    add_hosts
    mkdir -p "$state/spool/n1" "$state/spool/n2"
    slurmd -D -N n1 -f "$SLURM_CONF" >"$state/n1.out" 2>&1 &
    echo "slurmd $!" >>"$pids"
    # n2 without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH: its (root) tasks obey file modes, so a test can make a
    # directory unreadable on n2 only (chmod 000), the one way two nodes on one file system can see it differently.
    # setpriv execs slurmd, so $! is slurmd's PID.
    setpriv --inh-caps=-dac_override,-dac_read_search --bounding-set=-dac_override,-dac_read_search \
      slurmd -D -N n2 -f "$SLURM_CONF" >"$state/n2.out" 2>&1 &
    echo "slurmd $!" >>"$pids"
  fi

  local idle
  for _ in $(seq 300); do
    idle=$(sinfo -h -N -o %T 2>/dev/null | grep -cx idle || true)
    [ "$idle" = "$nodes" ] && { echo "export SLURM_CONF=$SLURM_CONF"; return 0; }
    sleep 0.1
  done
  echo "slurm_local: $nodes node(s) not idle after 30 s: sinfo says" \
    "'$(sinfo -h -N -o '%N %T' 2>&1 | paste -sd' ')'; logs in $state" >&2
  down
  exit 4
}

down() {
  [ -f "$pids" ] || { remove_hosts; echo "slurm_local: nothing recorded in $pids" >&2; return 0; }
  export SLURM_CONF="$state/slurm.conf"
  # Jobs first: their processes outlive slurmd otherwise. KillWait=5 bounds how long a job may ignore SIGTERM.
  if squeue -h -o %A >/dev/null 2>&1; then
    squeue -h -o %A | sort -u | xargs -r scancel 2>/dev/null || true
    for _ in $(seq 150); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  local name pid
  for name in slurmd slurmctld munged; do  # reverse order of start
    # munged is machine-wide: another local cluster that found it running reused it, so it stays while any
    # slurmctld (another cluster's) still runs
    [ "$name" = munged ] && pgrep -x -r R,S,D slurmctld >/dev/null && continue
    while read -r n pid; do [ "$n" = "$name" ] && stop_pid "$name" "$pid"; done <"$pids"
  done
  remove_hosts
  rm -f "$pids"
}

case $action in
  up) trap 'status=$?; [ "$status" = 0 ] || remove_hosts' EXIT; up ;;  # a failed `up` leaves no hosts lines
  down) down ;;
  *) usage ;;
esac
