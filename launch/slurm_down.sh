#!/usr/bin/env bash
# Stop the one-node SLURM cluster that launch/slurm_up.sh started: cancel queued/running jobs,
# then stop slurmd, slurmctld, slurmdbd, MariaDB and munged, each by the pid in its pid file
# (never by name). Safe to re-run: a daemon that is not running is reported and skipped.
# Packages, configs, the job database and the controller state stay, so slurm_up.sh is quick next time.
set -uo pipefail

say() { echo "slurm_down: $*"; }
# alive PID NAME: PID is a live process whose command is NAME (guards against a reused pid); a
# zombie counts as stopped (containers whose PID 1 does not reap orphans keep them around)
alive() {
    [[ -n "$1" && -r /proc/$1/comm && "$(cat "/proc/$1/comm" 2>/dev/null)" == "$2" ]] \
        && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

[[ $(id -u) == 0 ]] || { echo "slurm_down: error: must run as root" >&2; exit 1; }

if command -v squeue >/dev/null && jobs=$(squeue -h -o %A 2>/dev/null) && [[ -n $jobs ]]; then
    say "jobs: cancelling $(wc -l <<<"$jobs") job(s)"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 20); do [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break; sleep 0.5; done
fi

rc=0
# stop PIDFILE NAME: SIGTERM, wait up to 20 s, then SIGKILL
stop() {
    local pidfile=$1 name=$2 pid t0=$SECONDS
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if ! alive "$pid" "$name"; then
        say "$name: not running"
        return
    fi
    kill -TERM "$pid"
    for _ in $(seq 200); do alive "$pid" "$name" || break; sleep 0.1; done
    if alive "$pid" "$name"; then
        kill -KILL "$pid" 2>/dev/null
        sleep 0.5
    fi
    if alive "$pid" "$name"; then
        echo "slurm_down: error: $name (pid $pid) did not stop" >&2
        rc=1
    else
        say "$name: stopped (pid $pid, $((SECONDS - t0)) s)"
    fi
}

stop /run/slurmd.pid slurmd
stop /run/slurmctld.pid slurmctld
stop /run/slurmdbd.pid slurmdbd
stop /run/mysqld/mysqld.pid mariadbd
stop /run/munge/munged.pid munged
exit $rc
