#!/usr/bin/env bash
# Start a one-node SLURM cluster (munged, slurmctld, slurmd) on this machine, without systemd.
#
#   eval "$(bash slurm/local/start.sh [STATE_DIR])"     # default STATE_DIR: <repo>/.slurm
#
# Everything it writes lives under STATE_DIR: the munge key and socket, the rendered
# slurm.conf, spool and state folders, pid files and logs (STATE_DIR/log/*.log).
# Progress goes to stderr; stdout is a single `export SLURM_CONF=...` line for the caller to
# eval (slurm clients such as sinfo/sbatch/squeue and submitit need it).
#
# Idempotent: if the cluster of STATE_DIR is already up it says so and exits 0. Installs
# slurm-wlm and munge with apt-get when slurmctld, slurmd or munged are missing (needs root).
# Stop it with slurm/local/stop.sh [STATE_DIR].
#
# Environment knobs (all optional):
#   SLURM_LOCAL_PORT    slurmctld port (default 6817; slurmd uses the next one)
#   SLURM_LOCAL_CPUS    CPUs the node advertises (default: nproc)
#   SLURM_LOCAL_TIMEOUT seconds to wait for the node to become idle (default 60)
#
# Requeue: `scontrol requeue JOBID` puts a job back to pending with its begin time pushed by
# the credential lifetime. slurm.conf.in sets AuthInfo=...,cred_expire=5, so a requeued job
# is eligible again ~6 s later (instead of ~121 s with Slurm's default). To start one at once
# anyway: `scontrol update jobid=JOBID StartTime=now`.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STATE_DIR="${1:-$REPO/.slurm}"
mkdir -p "$STATE_DIR"
STATE_DIR="$(cd "$STATE_DIR" && pwd)"
CONF="$STATE_DIR/etc/slurm.conf"
SOCKET="$STATE_DIR/munge/munge.socket.2"
HOST="$(hostname -s)"
TIMEOUT="${SLURM_LOCAL_TIMEOUT:-60}"

say() { echo "slurm/local: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# pid_alive PIDFILE NAME: the pid file names a live process whose command is NAME.
pid_alive() {
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(cat "$1")"
    [[ -r "/proc/$pid/comm" ]] && [[ "$(cat "/proc/$pid/comm")" == "$2" ]]
}

node_state() { SLURM_CONF="$CONF" sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -n1; }

print_export() { echo "export SLURM_CONF=$CONF"; }

install_if_missing() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null && command -v sinfo >/dev/null; then
        return
    fi
    say "slurmctld/slurmd/munged missing: installing slurm-wlm and munge with apt-get"
    local sudo=""
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || die "not root and no sudo: install slurm-wlm and munge first"
        sudo="sudo"
    fi
    $sudo apt-get update >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        slurm-wlm munge >&2
}

start_munged() {
    local dir="$STATE_DIR/munge"
    mkdir -p "$dir" && chmod 0755 "$dir"   # munged wants o+x on the socket folder
    if [[ ! -s "$dir/munge.key" ]]; then
        say "creating munge key $dir/munge.key"
        (umask 077 && dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none)
    fi
    chmod 0400 "$dir/munge.key"
    if pid_alive "$STATE_DIR/run/munged.pid" munged; then
        return
    fi
    rm -f "$SOCKET" "$SOCKET.lock"
    munged --key-file="$dir/munge.key" --socket="$SOCKET" --pid-file="$STATE_DIR/run/munged.pid" \
        --log-file="$STATE_DIR/log/munged.log" --seed-file="$dir/munged.seed" --num-threads=2 \
        || die "munged failed to start; see $STATE_DIR/log/munged.log"
    munge -n -S "$SOCKET" | unmunge -S "$SOCKET" >/dev/null \
        || die "munge round trip failed; see $STATE_DIR/log/munged.log"
}

render_conf() {
    local cpus mem_total_mb real_mb margin
    cpus="${SLURM_LOCAL_CPUS:-$(nproc)}"
    mem_total_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
    # Leave 10 % (at least 512 MB) to the system; slurmd drains a node that reports less
    # memory than RealMemory.
    margin=$(( mem_total_mb / 10 > 512 ? mem_total_mb / 10 : 512 ))
    real_mb=$(( mem_total_mb - margin ))
    local port="${SLURM_LOCAL_PORT:-6817}"
    mkdir -p "$STATE_DIR/etc"
    : > "$STATE_DIR/etc/plugstack.conf"   # no SPANK plugins (ignore /etc/slurm/plugstack.conf)
    sed -e "s|@STATE_DIR@|$STATE_DIR|g" -e "s|@HOST@|$HOST|g" -e "s|@USER@|$(id -un)|g" \
        -e "s|@CTLD_PORT@|$port|g" -e "s|@SLURMD_PORT@|$((port + 1))|g" \
        -e "s|@CPUS@|$cpus|g" -e "s|@REAL_MEMORY@|$real_mb|g" \
        -e "s|@MEM_PER_CPU@|$(( real_mb / cpus ))|g" \
        "$HERE/slurm.conf.in" > "$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
}

log_tails() {
    local f
    for f in slurmctld slurmd munged; do
        if [[ -f "$STATE_DIR/log/$f.log" ]]; then
            say "---- last lines of $STATE_DIR/log/$f.log"
            tail -n 25 "$STATE_DIR/log/$f.log" >&2
        fi
    done
}

wait_for_idle() {
    local deadline=$(( SECONDS + TIMEOUT )) state="" resumed=0
    while (( SECONDS < deadline )); do
        state="$(node_state || true)"
        case "$state" in
            idle|mixed|allocated) return 0 ;;
            drain*|drained*|down)
                # e.g. left drained by an unclean stop; ReturnToService=2 covers plain `down`.
                if (( ! resumed )); then
                    SLURM_CONF="$CONF" scontrol update nodename="$HOST" state=resume >&2 || true
                    resumed=1
                fi ;;
        esac
        sleep 1
    done
    log_tails
    die "node $HOST is not idle after ${TIMEOUT}s (state: '${state:-no answer from slurmctld}')"
}

main() {
    if pid_alive "$STATE_DIR/run/munged.pid" munged \
        && pid_alive "$STATE_DIR/run/slurmctld.pid" slurmctld \
        && pid_alive "$STATE_DIR/run/slurmd.pid" slurmd && [[ -n "$(node_state)" ]]; then
        say "already up ($STATE_DIR, node $HOST: $(node_state))"
        print_export
        return 0
    fi
    install_if_missing
    mkdir -p "$STATE_DIR"/{etc,run,log,ctld,slurmd}
    start_munged
    render_conf
    export SLURM_CONF="$CONF"
    if ! pid_alive "$STATE_DIR/run/slurmctld.pid" slurmctld; then
        say "starting slurmctld"
        slurmctld -f "$CONF" || { log_tails; die "slurmctld failed to start"; }
    fi
    if ! pid_alive "$STATE_DIR/run/slurmd.pid" slurmd; then
        say "starting slurmd"
        slurmd -f "$CONF" || { log_tails; die "slurmd failed to start"; }
    fi
    wait_for_idle
    say "up: node $HOST $(node_state), partition debug; logs in $STATE_DIR/log"
    print_export
}

main
