#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the slurm-marked tests and for trying the SLURM paths by hand.
#
#   tests/cluster/slurm.sh start    install (Debian packages, when missing and root), configure, start
#   tests/cluster/slurm.sh stop     stop slurmd, slurmctld, slurmdbd, MariaDB and munged
#   tests/cluster/slurm.sh status   print the node's state; exit 0 when it accepts jobs
#
# Idempotent: `start` on a running cluster only checks it. It writes /etc/slurm/slurm.conf and slurmdbd.conf only
# when there are none or when those there are its own (first line below), so a real cluster's are never touched.
# Accounting goes through slurmdbd and a local MariaDB, so `sacct` answers: submitit asks it for every job's state,
# and without it a cancelled or killed job stays UNKNOWN and whoever waits on it never returns. Finished jobs are
# also listed, one line each (JobId=... JobState=...), in $JOBCOMP.
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin

CONF=/etc/slurm/slurm.conf
DBD=/etc/slurm/slurmdbd.conf
MARK="# written by slidemap tests/cluster/slurm.sh"
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm
JOBCOMP=$LOGS/jobcomp.log
PACKAGES="slurm-wlm slurmdbd munge mariadb-server"

say() { echo "slurm.sh: $*" >&2; }

up() {  # the node accepts jobs: idle, mixed or allocated
  timeout 5 sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated|completing)'
}

install() {
  local cmd missing=""
  for cmd in slurmctld slurmd slurmdbd munged mariadbd; do
    command -v "$cmd" >/dev/null || missing="$missing $cmd"
  done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "missing:$missing; installing $PACKAGES needs root and apt-get"; return 1
  fi
  say "installing $PACKAGES (Debian packages)"
  # shellcheck disable=SC2086
  { timeout 120 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 300 \
      apt-get install -y -qq --no-install-recommends $PACKAGES; } >/dev/null 2>&1 \
    || { say "apt-get could not install $PACKAGES"; return 1; }
}

ours() {  # $1 is absent or written by this script
  [ ! -f "$1" ] || [ "$(head -n1 "$1")" = "$MARK" ]
}

configure() {
  if ! ours "$CONF" || ! ours "$DBD"; then
    say "$CONF or $DBD is not this script's: using them as they are"; return 0
  fi
  local node host
  node=$(slurmd -C | head -n1)  # NodeName=<host> CPUs=... RealMemory=...: this machine as slurmd sees it
  host=$(hostname -s)
  mkdir -p /etc/slurm "$STATE" "$SPOOL" "$LOGS"
  cat > "$CONF.tmp" <<CONFIG
$MARK
ClusterName=slidemap
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
# cred_expire: how long a requeued job waits before it may start again (the default, 120 s, would stretch a
# requeue test by two minutes)
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# a requeued job becomes eligible by time, which only the periodic scheduler sees (default every 60 s)
SchedulerParameters=sched_interval=5,bf_interval=5
MpiDefault=none
ReturnToService=2
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/filetxt
JobCompLoc=$JOBCOMP
MinJobAge=600
KillWait=10
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONFIG
  mv "$CONF.tmp" "$CONF"
  cat > "$DBD.tmp" <<CONFIG
$MARK
DbdHost=localhost
SlurmUser=root
AuthType=auth/munge
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
CONFIG
  chmod 600 "$DBD.tmp" && mv "$DBD.tmp" "$DBD"
}

start_munge() {
  if timeout 5 munge -n </dev/null 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; then return 0; fi
  [ -s /etc/munge/munge.key ] || { mungekey -c -f -k /etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; }
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
  runuser -u munge -- munged
}

start_accounting() {  # MariaDB, its slurm user, slurmdbd; waits until slurmdbd answers
  mysqladmin ping >/dev/null 2>&1 || service mariadb start >/dev/null 2>&1 \
    || { say "MariaDB did not start"; return 1; }
  mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  pgrep -x slurmdbd >/dev/null || slurmdbd
  for _ in $(seq 1 30); do
    timeout 5 sacctmgr -n show cluster >/dev/null 2>&1 && return 0
    sleep 1
  done
  say "slurmdbd did not answer; see $LOGS/slurmdbd.log"; return 1
}

start() {
  if up && timeout 5 sacct -n -X -S now >/dev/null 2>&1; then
    say "running: $(sinfo -h -o '%N %T %c CPUs %m MB' | head -n1)"; return 0
  fi
  install
  configure
  start_munge
  start_accounting
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  for _ in $(seq 1 30); do
    if up && timeout 5 sacct -n -X -S now >/dev/null 2>&1; then
      say "started: $(sinfo -h -o '%N %T %c CPUs %m MB' | head -n1)"; return 0
    fi
    scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true  # a node left down/drained
    sleep 1
  done
  say "the cluster did not come up; see $LOGS/slurmctld.log and $LOGS/slurmd.log"; return 1
}

stop_pid() {  # $1: pid file, $2: name
  local pid
  pid=$(cat "$1" 2>/dev/null || true)
  if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    say "$2 ($pid) did not stop"
  fi
}

stop() {
  stop_pid /run/slurmd.pid slurmd
  stop_pid /run/slurmctld.pid slurmctld
  stop_pid /run/slurmdbd.pid slurmdbd
  service mariadb stop >/dev/null 2>&1 || true
  stop_pid /run/munge/munged.pid munged
  say "stopped"
}

status() {
  if up; then sinfo; return 0; fi
  say "not running"; return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
