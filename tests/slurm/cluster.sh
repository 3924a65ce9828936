#!/usr/bin/env bash
# A one-node Slurm cluster on loopback for the slurm test suite.
#
#   tests/slurm/cluster.sh start    install the packages if missing, write the
#                                   configuration, start munged, slurmctld and
#                                   slurmd, wait until the node is idle
#   tests/slurm/cluster.sh stop     stop the daemons this script started
#   tests/slurm/cluster.sh status   say what runs; exit 0 when the node is up
#   tests/slurm/cluster.sh env      print the variables the Slurm commands need
#                                   (eval "$(tests/slurm/cluster.sh env)")
#
# Everything lives under one state directory, CKPTDB_SLURM_DIR (default
# /tmp/ckptdb-slurm): slurm.conf, cgroup.conf, munge key and socket, spool,
# controller state, logs and the pid files.  Idempotent: start on a running
# cluster changes nothing, stop on a stopped one does nothing.  stop signals
# only the processes named by its own pid files, after checking that each pid
# is still the daemon it started with this configuration.
#
# CKPTDB_SLURM_PROCTRACK=cgroup|pgid forces the process tracking plugin
# (default: cgroup where a writable cgroup v1 freezer exists, else pgid);
# CKPTDB_SLURM_CTLD_PORT, CKPTDB_SLURM_SLURMD_PORT: other ports than 6817, 6818.
#
# Exit status: 0 done; 77 the cluster cannot run here (not root, packages not
# installable, no process tracking, a daemon would not start), with the reason
# on stderr: the test suite turns it into a skip; 1 other errors.
set -uo pipefail

STATE="${CKPTDB_SLURM_DIR:-/tmp/ckptdb-slurm}"
CTLD_PORT="${CKPTDB_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${CKPTDB_SLURM_SLURMD_PORT:-6818}"
PKGS=(slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge)
CONF="$STATE/etc/slurm.conf"
SOCKET="$STATE/munge/munge.socket.2"

starting=0
# A start that fails half-way stops the daemons it had started.
cant() {
  echo "slurm cluster: cannot run here: $*" >&2
  if [ $starting -eq 1 ]; then starting=0; stop; fi
  exit 77
}
die() { echo "slurm cluster: $*" >&2; exit 1; }
log() { echo "slurm cluster: $*" >&2; }

# The pid in a pid file if that process is still the daemon started from this
# state directory (its command line names our file), else nothing.
live_pid() { # name pidfile
  local pid
  [ -f "$2" ] || return 1
  pid=$(tr -dc '0-9' < "$2")
  [ -n "$pid" ] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  local cmd
  cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  case "$cmd" in *"$1"*"$STATE"*) ;; *) return 1 ;; esac
  echo "$pid"
}

print_env() {
  echo "export SLURM_CONF='$CONF'"
}

node_name() { hostname -s; }

install_packages() {
  local missing=() p
  for p in "${PKGS[@]}"; do dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get > /dev/null || cant "packages ${missing[*]} are missing and there is no apt-get"
  log "installing ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
      > "$STATE/apt.log" 2>&1; then
    apt-get update -q >> "$STATE/apt.log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
      >> "$STATE/apt.log" 2>&1 || cant "installing ${missing[*]} failed (see $STATE/apt.log)"
  fi
}

# proctrack/cgroup needs a writable cgroup v1 freezer hierarchy; otherwise
# process groups (proctrack/pgid) track the job's processes.
proctrack() {
  local probe="/sys/fs/cgroup/freezer/ckptdb-probe-$$"
  case "${CKPTDB_SLURM_PROCTRACK:-}" in cgroup | pgid) echo "$CKPTDB_SLURM_PROCTRACK"; return ;; esac
  if [ -d /sys/fs/cgroup/freezer ] && mkdir "$probe" 2> /dev/null; then
    rmdir "$probe"
    echo cgroup
  else
    echo pgid
  fi
}

write_config() {
  local node track plugdir
  node=$(node_name)
  [ -n "$node" ] || cant "the host has no name"
  track=$(proctrack)
  plugdir=$(dirname "$(dpkg -L slurm-wlm-basic-plugins | grep -m1 '/proctrack_pgid.so$')")
  mkdir -p "$STATE/etc" "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/log" "$STATE/run" "$STATE/munge"
  cat > "$CONF.tmp" <<EOF
# Written by tests/slurm/cluster.sh: one node on loopback.
ClusterName=ckptdb
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET,cred_expire=10
PluginDir=$plugdir
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/$track
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=10
JobRequeue=1
ReturnToService=2
MailProg=/bin/true
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
  cat > "$STATE/etc/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
EOF
}

start_munge() {
  if live_pid munged "$STATE/run/munged.pid" > /dev/null; then return 0; fi
  # munged checks its directories: the socket's must be 0755, the key 0600.
  chmod 0755 "$STATE/munge" "$STATE"
  if [ ! -s "$STATE/etc/munge.key" ]; then
    dd if=/dev/urandom of="$STATE/etc/munge.key.tmp" bs=1024 count=1 status=none || die "cannot write the munge key"
    chmod 0600 "$STATE/etc/munge.key.tmp"
    mv "$STATE/etc/munge.key.tmp" "$STATE/etc/munge.key"
  fi
  rm -f "$SOCKET" "$SOCKET.lock"
  munged --force --socket="$SOCKET" --key-file="$STATE/etc/munge.key" --pid-file="$STATE/run/munged.pid" \
    --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed" > "$STATE/log/munged.out" 2>&1 ||
    cant "munged would not start: $(tail -n 3 "$STATE/log/munged.out" "$STATE/log/munged.log" 2>/dev/null | tr '\n' ' ')"
  wait_for 10 "munged's socket" test -S "$SOCKET" || cant "munged did not create $SOCKET"
  wait_for 10 "munged's pid file" live_pid munged "$STATE/run/munged.pid" || cant "munged wrote no pid file"
}

wait_for() { # seconds what command...
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  while [ $SECONDS -lt $end ]; do
    "$@" > /dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "gave up after ${limit}s waiting for $what"
  return 1
}

node_idle() {
  local s
  s=$(SLURM_CONF="$CONF" sinfo -h -N -n "$(node_name)" -o %T 2>/dev/null) || return 1
  case "$s" in idle|mixed|allocated) return 0;; *) return 1;; esac
}

port_free() { # port: nobody listens on it
  ! (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null
}

start() {
  [ "$(id -u)" -eq 0 ] || cant "the daemons run as root here and this is uid $(id -u)"
  mkdir -p "$STATE" || die "cannot create $STATE"
  if status_quiet; then
    log "already running (state in $STATE)"
    return 0
  fi
  install_packages
  starting=1
  for c in munged slurmctld slurmd sinfo scontrol sbatch; do
    command -v "$c" > /dev/null || cant "$c is not installed"
  done
  write_config
  start_munge
  if ! live_pid slurmctld "$STATE/run/slurmctld.pid" > /dev/null; then
    port_free "$CTLD_PORT" || cant "port $CTLD_PORT is taken by another program (set CKPTDB_SLURM_CTLD_PORT)"
    # -c: clear the state of an earlier cluster; -i: ignore what cannot be recovered.
    SLURM_CONF="$CONF" slurmctld -c -i -f "$CONF" > "$STATE/log/slurmctld.out" 2>&1 ||
      cant "slurmctld would not start: $(tail -n 5 "$STATE/log/slurmctld.log" "$STATE/log/slurmctld.out" 2>/dev/null | tr '\n' ' ')"
    # It writes its pid file after it forked: without it, stop could not find it.
    wait_for 10 "slurmctld's pid file" live_pid slurmctld "$STATE/run/slurmctld.pid" ||
      cant "slurmctld wrote no pid file: $(tail -n 5 "$STATE/log/slurmctld.log" 2>/dev/null | tr '\n' ' ')"
  fi
  if ! live_pid slurmd "$STATE/run/slurmd.pid" > /dev/null; then
    port_free "$SLURMD_PORT" || cant "port $SLURMD_PORT is taken by another program (set CKPTDB_SLURM_SLURMD_PORT)"
    SLURM_CONF="$CONF" slurmd -f "$CONF" > "$STATE/log/slurmd.out" 2>&1 ||
      cant "slurmd would not start: $(tail -n 5 "$STATE/log/slurmd.log" "$STATE/log/slurmd.out" 2>/dev/null | tr '\n' ' ')"
    wait_for 10 "slurmd's pid file" live_pid slurmd "$STATE/run/slurmd.pid" ||
      cant "slurmd wrote no pid file: $(tail -n 5 "$STATE/log/slurmd.log" 2>/dev/null | tr '\n' ' ')"
  fi
  if ! wait_for 60 "the node to be idle" node_idle; then
    cant "the node did not come up: $(tail -n 5 "$STATE/log/slurmd.log" "$STATE/log/slurmctld.log" 2>/dev/null | tr '\n' ' ')"
  fi
  starting=0
  log "running: node $(node_name), proctrack/$(sed -n 's|^ProctrackType=proctrack/||p' "$CONF"), state in $STATE"
}

status_quiet() {
  live_pid munged "$STATE/run/munged.pid" > /dev/null &&
    live_pid slurmctld "$STATE/run/slurmctld.pid" > /dev/null &&
    live_pid slurmd "$STATE/run/slurmd.pid" > /dev/null && [ -f "$CONF" ] && node_idle
}

status() {
  local d pid rc=0
  for d in munged slurmctld slurmd; do
    if pid=$(live_pid "$d" "$STATE/run/$d.pid"); then
      echo "$d: running (pid $pid)"
    else
      echo "$d: not running"
      rc=3
    fi
  done
  if [ $rc -eq 0 ]; then
    echo "node: $(SLURM_CONF="$CONF" sinfo -h -N -o '%N %T' 2>&1)"
    node_idle || rc=3
  fi
  return $rc
}

stop_one() { # name pidfile
  local pid
  pid=$(live_pid "$1" "$2") || { rm -f "$2"; return 0; }
  kill -TERM "$pid" 2> /dev/null || true
  local end=$((SECONDS + 15))
  while [ -d "/proc/$pid" ] && [ $SECONDS -lt $end ]; do sleep 0.1; done
  if [ -d "/proc/$pid" ]; then
    log "$1 (pid $pid) ignored SIGTERM for 15s; sending SIGKILL"
    kill -KILL "$pid" 2> /dev/null || true
  fi
  rm -f "$2"
}

stop() {
  # Jobs first, so that no job step outlives its slurmd.
  if live_pid slurmctld "$STATE/run/slurmctld.pid" > /dev/null && [ -f "$CONF" ]; then
    SLURM_CONF="$CONF" scancel --full --quiet --partition=test 2> /dev/null || true
    wait_for 15 "the jobs to end" sh -c "[ -z \"\$(SLURM_CONF='$CONF' squeue -h -o %i 2>/dev/null)\" ]" || true
  fi
  stop_one slurmd "$STATE/run/slurmd.pid"
  stop_one slurmctld "$STATE/run/slurmctld.pid"
  stop_one munged "$STATE/run/munged.pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
