#!/usr/bin/env bash
# A single-node Slurm on this machine, for the cluster tests (tests/test_slurm.py) and for trying
# `python -m hicd_core sweep --executor slurm` without a cluster.
#
#   scripts/slurm-local.sh start    install slurm-wlm + munge if missing, configure, start, wait idle
#   scripts/slurm-local.sh stop     stop the daemons this script started
#   scripts/slurm-local.sh status   print sinfo (exit 1 when the node is not up)
#
# Runs as root (Debian's packages; the daemons run as root). Idempotent: `start` on a running Slurm
# only checks it. Never hangs: every wait has a timeout, and a Slurm that cannot start exits non-zero
# with the reason on stderr (CI then skips the Slurm tests, which say why).
set -euo pipefail

CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm
MARK="# written by hicd scripts/slurm-local.sh"
WAIT_S=${SLURM_LOCAL_WAIT_S:-60}

die() { echo "slurm-local: $*" >&2; exit 1; }

node_up() {  # the local node answers and is idle/mixed/allocated (not down/drained)
  local state
  state=$(timeout 10 sinfo -h -N -o '%T' 2>/dev/null | head -n1) || return 1
  [[ "$state" =~ ^(idle|mixed|allocated|completing) ]]
}

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  command -v apt-get >/dev/null || die "slurm-wlm is not installed and apt-get is not available"
  [[ $(id -u) == 0 ]] || die "installing slurm-wlm needs root"
  echo "slurm-local: installing slurm-wlm and munge (about 20 s)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq || die "apt-get update failed"
  timeout 600 apt-get install -y -qq slurm-wlm munge >/dev/null || die "apt-get install slurm-wlm munge failed"
}

write_conf() {
  # Only our own file is rewritten: a real cluster's slurm.conf is never touched.
  if [[ -f "$CONF" ]] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script; refusing to overwrite it"
  fi
  local host node
  host=$(hostname -s)
  # `slurmd -C` prints this machine's NodeName line (CPUs, sockets, cores, memory).
  node=$(timeout 20 slurmd -C | head -n1) || die "slurmd -C failed"
  [[ "$node" == NodeName=* ]] || die "unexpected slurmd -C output: $node"
  mkdir -p "$CONF_DIR" "$STATE" "$SPOOL" "$LOGS"
  cat >"$CONF.tmp" <<EOF
$MARK
ClusterName=hicd-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ReturnToService=2
MaxArraySize=10001
KillWait=5
MinJobAge=600
SchedulerParameters=bf_interval=2,sched_min_interval=200000
${node% UpTime=*} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  mv "$CONF.tmp" "$CONF"
}

start() {
  if node_up; then
    echo "slurm-local: already up"; timeout 10 sinfo; return 0
  fi
  install
  [[ $(id -u) == 0 ]] || die "starting the Slurm daemons needs root"
  write_conf
  if ! timeout 5 munge -n </dev/null >/dev/null 2>&1; then
    [[ -s /etc/munge/munge.key ]] || timeout 30 mungekey --create >/dev/null 2>&1 \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    timeout 20 munged --force || die "munged did not start (see /var/log/munge/munged.log)"
  fi
  timeout 10 munge -n </dev/null | timeout 10 unmunge >/dev/null 2>&1 || die "munge does not work"
  pgrep -x slurmctld >/dev/null || timeout 30 slurmctld || die "slurmctld did not start (see $LOGS/slurmctld.log)"
  pgrep -x slurmd >/dev/null || timeout 30 slurmd || die "slurmd did not start (see $LOGS/slurmd.log)"
  local waited=0
  until node_up; do
    if (( waited >= WAIT_S )); then
      timeout 10 sinfo -N -l >&2 || true
      tail -n 5 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 2>/dev/null || true
      die "the node is not idle after ${WAIT_S}s"
    fi
    # A node that came back DOWN from an earlier run (e.g. after a reboot) is returned to service.
    timeout 10 scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true
    sleep 1; waited=$((waited + 1))
  done
  echo "slurm-local: up"; timeout 10 sinfo
}

stop() {
  # Our daemons only, by their pid files (never a broad pkill).
  local pidfile pid
  for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
    if [[ -f "$pidfile" ]]; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      rm -f "$pidfile"
    fi
  done
  echo "slurm-local: stopped (munged is left running)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if node_up; then timeout 10 sinfo; else echo "slurm-local: not up" >&2; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
