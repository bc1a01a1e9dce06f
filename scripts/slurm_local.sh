#!/usr/bin/env bash
# A private one-node SLURM cluster on loopback, for trying the SLURM runner and for its tests.
#
#   scripts/slurm_local.sh install         apt-get the Debian packages (root)
#   scripts/slurm_local.sh start|stop|status
#   eval "$(scripts/slurm_local.sh env)"   point sbatch/squeue/sacct at the cluster
#
# Everything (configs, MariaDB, spool, logs, pid files) lives in SLURM_LOCAL_DIR, so it never
# touches /etc/slurm; munge is the system one (started if down, stopped only if started here).
# Needs root: slurmd runs jobs as their user.
# Settings (environment): SLURM_LOCAL_DIR (default /tmp/metasyn-slurm), SLURM_LOCAL_PORT (first
# of four consecutive ports, default 16817), SLURM_LOCAL_CPUS / SLURM_LOCAL_MEM_MB / SLURM_LOCAL_GPUS
# (what the node claims to have; may exceed the hardware, e.g. to fit the 32-CPU profile).
set -euo pipefail

DIR="${SLURM_LOCAL_DIR:-/tmp/metasyn-slurm}"
PORT="${SLURM_LOCAL_PORT:-16817}"
CPUS="${SLURM_LOCAL_CPUS:-$(nproc)}"
MEM_MB="${SLURM_LOCAL_MEM_MB:-$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2))}"
GPUS="${SLURM_LOCAL_GPUS:-1}"
NODE=local1
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
export SLURM_CONF="$DIR/slurm.conf"

log() { echo "slurm_local: $*" >&2; }

alive() { [[ -f "$DIR/run/$1.pid" ]] && kill -0 "$(cat "$DIR/run/$1.pid")" 2>/dev/null; }

munge_up() { munge -n </dev/null >/dev/null 2>&1; }

installed() {
  local program
  for program in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd; do
    command -v "$program" >/dev/null || return 1
  done
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out waiting for $what; logs in $DIR/log"
      tail -n 20 "$DIR"/log/*.log >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

install_packages() {
  if installed; then
    log "packages already installed"
    return
  fi
  "$(dirname "${BASH_SOURCE[0]}")/apt_install.sh" "${PACKAGES[@]}"
}

write_configs() {
  mkdir -p "$DIR"/{run,log,mysql,ctld,spool,dev}
  local gres="" gres_types=""
  for ((i = 0; i < GPUS; i++)); do
    # slurmd only accepts character devices as GPU files; /dev/null's numbers make a harmless fake.
    [[ -e "$DIR/dev/gpu$i" ]] || mknod "$DIR/dev/gpu$i" c 1 3
    echo "NodeName=$NODE Name=gpu File=$DIR/dev/gpu$i"
  done >"$DIR/gres.conf"
  if ((GPUS > 0)); then
    gres="Gres=gpu:$GPUS"
    gres_types="GresTypes=gpu
AccountingStorageTRES=gres/gpu"
  fi
  cat >"$DIR/slurm.conf" <<EOF
ClusterName=metasyn-local
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits cred_expire seconds before it may start again (default 120, at least 5): short for tests.
AuthInfo=cred_expire=5
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups in containers: track processes by parentage, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
# Share the node between jobs by cores and memory; without DefMemPerCPU a job takes it whole.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
# Schedule at once instead of in 3-second steps, try pending jobs every second (a requeued job waits for
# the next try), and end timed-out jobs without grace.
SchedulerParameters=batch_sched_delay=0,sched_interval=1
OverTimeLimit=0
KillWait=5
# The node may claim more CPUs/memory than the machine has (SLURM_LOCAL_CPUS, ...).
SlurmdParameters=config_overrides
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$((PORT + 2))
$gres_types
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$CPUS RealMemory=$MEM_MB $gres State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 3))
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DIR/slurmdbd.conf"
}

start_munged() {
  # SLURM clients only talk to the default munge socket, so share the system munged if it runs.
  munge_up && return
  install -d -o munge -g munge -m 755 /run/munge
  runuser -u munge -- munged
  wait_for 10 munged test -S /run/munge/munge.socket.2
  cp /run/munge/munged.pid "$DIR/run/munged.pid"
}

start_mariadbd() {
  local sock="$DIR/run/mysqld.sock"
  if [[ ! -d "$DIR/mysql/mysql" ]]; then
    mariadb-install-db --no-defaults --user=root --datadir="$DIR/mysql" --skip-test-db \
      --auth-root-authentication-method=socket >"$DIR/log/mariadb-install.log" 2>&1
  fi
  # mariadbd does not daemonise itself: detach it from this shell's session and output.
  setsid mariadbd --no-defaults --user=root --datadir="$DIR/mysql" --socket="$sock" \
    --bind-address=127.0.0.1 --port=$((PORT + 3)) --skip-name-resolve --innodb-buffer-pool-size=16M \
    --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadbd.log" \
    </dev/null >>"$DIR/log/mariadbd.log" 2>&1 &
  wait_for 30 mariadbd mariadb --no-defaults --socket="$sock" -e "SELECT 1"
  mariadb --no-defaults --socket="$sock" -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurmdbd() {
  slurmdbd  # reads slurmdbd.conf next to $SLURM_CONF
  wait_for 30 slurmdbd sacctmgr -i list cluster
}

start_slurmctld() {
  slurmctld -f "$SLURM_CONF"
  wait_for 30 slurmctld scontrol ping
}

start_slurmd() {
  slurmd -f "$SLURM_CONF" -N "$NODE"
  wait_for 30 "node $NODE" bash -c "sinfo -h -n $NODE -o %t | grep -qx idle"
}

start() {
  [[ $EUID -eq 0 ]] || { log "must run as root (slurmd starts jobs as their user)"; exit 1; }
  installed || { log "SLURM is not installed: run '$0 install' first"; exit 1; }
  write_configs
  local daemon
  for daemon in "${DAEMONS[@]}"; do
    alive "$daemon" || "start_$daemon"
  done
  log "running; use it with: export SLURM_CONF=$SLURM_CONF"
}

stop_daemons() {  # stop_daemons NAME...: signal them all, then wait for each
  local daemon pids=()
  for daemon in "$@"; do
    alive "$daemon" || continue
    pids+=("$(cat "$DIR/run/$daemon.pid")")
    kill "${pids[-1]}"
  done
  for pid in "${pids[@]}"; do
    wait_for 30 "process $pid to stop" bash -c "! kill -0 $pid"
  done
}

stop() {
  if alive slurmctld; then
    squeue -h -o %i | xargs -r scancel || true
  fi
  # The controller reports its last job records to slurmdbd, so accounting stops after it.
  stop_daemons slurmd slurmctld
  stop_daemons slurmdbd mariadbd munged
  rm -f "$DIR"/run/*.pid
  log "stopped"
}

status() {
  local daemon down=0
  for daemon in "${DAEMONS[@]}"; do
    if alive "$daemon" || { [[ $daemon == munged ]] && munge_up; }; then
      echo "$daemon: running"
    else
      echo "$daemon: stopped"
      down=1
    fi
  done
  ((down)) || sinfo
  return $down
}

case "${1:-}" in
  install) install_packages ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$SLURM_CONF" ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
