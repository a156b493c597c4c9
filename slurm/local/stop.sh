#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by slurm/local/start.sh [STATE_DIR].
#
#   bash slurm/local/stop.sh [STATE_DIR]        # default STATE_DIR: <repo>/.slurm
#
# Cancels every job still in its queue (so no job step outlives the cluster), stops slurmd,
# slurmctld and munged through their pid files (TERM, then KILL after 10 s), and kills any
# slurmstepd left behind by this cluster's slurmd. STATE_DIR itself (logs, key, state) stays;
# delete it for a clean slate. Safe to run when the cluster is down.
set -uo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STATE_DIR="${1:-$REPO/.slurm}"
if [[ ! -d "$STATE_DIR" ]]; then
    echo "slurm/local: nothing to stop ($STATE_DIR does not exist)" >&2
    exit 0
fi
STATE_DIR="$(cd "$STATE_DIR" && pwd)"
CONF="$STATE_DIR/etc/slurm.conf"
RUN="$STATE_DIR/run"

say() { echo "slurm/local: $*" >&2; }

# pid_of PIDFILE NAME: the pid in PIDFILE if it is a live process whose command is NAME.
pid_of() {
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(cat "$1")"
    [[ -r "/proc/$pid/comm" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]] && echo "$pid"
}

# Job steps of this cluster: slurmstepd processes that inherited our SLURM_CONF from slurmd.
our_stepds() {
    local pid
    for pid in $(pgrep -x slurmstepd); do
        { tr '\0' '\n' < "/proc/$pid/environ"; } 2>/dev/null | grep -qx "SLURM_CONF=$CONF" \
            && echo "$pid"
    done
}

wait_gone() {  # wait_gone SECONDS PID...: wait until none of the PIDs is alive
    local deadline=$(( SECONDS + $1 )); shift
    local pid alive
    while (( SECONDS < deadline )); do
        alive=0
        for pid in "$@"; do
            [[ -d "/proc/$pid" ]] && [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] \
                && alive=1
        done
        (( alive )) || return 0
        sleep 0.5
    done
    return 1
}

stop_daemon() {  # stop_daemon NAME
    local pid
    pid="$(pid_of "$RUN/$1.pid" "$1")" || { rm -f "$RUN/$1.pid"; return 0; }
    say "stopping $1 ($pid)"
    kill -TERM "$pid" 2>/dev/null
    wait_gone 10 "$pid" || { say "$1 ignored TERM: killing it"; kill -KILL "$pid" 2>/dev/null; }
    rm -f "$RUN/$1.pid"
}

cancel_jobs() {
    pid_of "$RUN/slurmctld.pid" slurmctld >/dev/null || return 0
    local jobs
    jobs="$(SLURM_CONF="$CONF" squeue -h -o '%A' 2>/dev/null | sort -u | tr '\n' ' ')"
    [[ -n "${jobs// /}" ]] || return 0
    say "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    SLURM_CONF="$CONF" scancel $jobs 2>/dev/null
    # KillWait=2: steps get TERM, then KILL 2 s later.
    # shellcheck disable=SC2046
    wait_gone 15 $(our_stepds) || say "some job steps are still running"
}

cancel_jobs
stop_daemon slurmd
stop_daemon slurmctld
leftover="$(our_stepds | tr '\n' ' ')"
if [[ -n "${leftover// /}" ]]; then
    say "killing leftover slurmstepd: $leftover"
    # shellcheck disable=SC2086
    kill -KILL $leftover 2>/dev/null
fi
stop_daemon munged
rm -f "$STATE_DIR/munge/munge.socket.2" "$STATE_DIR/munge/munge.socket.2.lock"
say "stopped ($STATE_DIR)"
