#!/bin/bash
# What `tracer attach --all` costs a node: starts PROCS live processes spread over CGROUPS
# cgroups (v2) doing a mixed workload, attaches the tracer to everything, and after a warm-up
# measures for SECS seconds: the daemon's CPU (% of one core, from /proc/PID/stat), its
# resident memory, the series of one scrape, and how long a scrape takes. Prints one JSON
# line. Needs root (probes, cgroups). Cleans up after itself.
#
#   deploy/node-cost.sh [PROCS=1000] [CGROUPS=50] [SECS=60] [TRACER=target/release/tracer]
#   TRACER_ARGS="--group-by container" deploy/node-cost.sh ...   # extra attach options
#
# The mix: 1 in BUSY_EVERY (10) processes is busy (a shell that forks `head` reading 1 MiB every 100 ms:
# fork, exec, mmap, page faults, exit); the rest sleep, as most processes of a node do.
set -euo pipefail

procs=${1:-1000}
groups=${2:-50}
secs=${3:-60}
tracer=${4:-target/release/tracer}
busy_every=${BUSY_EVERY:-10}

mount=$(findmnt -n -o TARGET -t cgroup2 | head -1)
[ -n "$mount" ] || { echo "no cgroup v2 mount" >&2; exit 1; }
root="$mount/tracer-cost-$$"
log=$(mktemp)
mkdir "$root"
pids=()
tracer_pid=
cleanup() {
    [ -n "$tracer_pid" ] && kill -INT "$tracer_pid" 2>/dev/null && wait "$tracer_pid" 2>/dev/null
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    # The busy shells' last children may still be exiting.
    sleep 0.5
    for d in "$root"/*/; do rmdir "$d" 2>/dev/null || true; done
    rmdir "$root" 2>/dev/null || true
    rm -f "$log"
}
trap cleanup EXIT
trap "exit 1" INT TERM

for g in $(seq 1 "$groups"); do mkdir "$root/c$g"; done
for i in $(seq 1 "$procs"); do
    dir="$root/c$(( (i % groups) + 1 ))"
    if (( i % busy_every == 0 )); then
        sh -c "echo \$\$ > $dir/cgroup.procs; exec sh -c 'while :; do head -c 1048576 /dev/zero > /dev/null; sleep 0.1; done'" &
    else
        sh -c "echo \$\$ > $dir/cgroup.procs; exec sleep 100000" &
    fi
    pids+=($!)
done

# shellcheck disable=SC2086
"$tracer" attach --all --listen 127.0.0.1:0 --exclude-comm curl ${TRACER_ARGS:-} \
    2> "$log" &
tracer_pid=$!
for _ in $(seq 1 120); do
    grep -q "attached to" "$log" 2>/dev/null && break
    sleep 0.5
done
grep -q "attached to" "$log" || { cat "$log" >&2; exit 1; }
api=$(sed -n 's|^tracer: serving the API on \(http://[^/]*\)/.*|\1|p' "$log" | head -1)
echo "node-cost: attached, warming up" >&2
sleep 10  # warm-up: the attach seeds every process

ticks() { awk '{print $14 + $15}' "/proc/$tracer_pid/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks)
start=$(date +%s.%N)
scrapes=()
while :; do
    now=$(date +%s.%N)
    if (( $(echo "$now - $start >= $secs" | bc) )); then break; fi
    scrapes+=("$(curl -s -m 60 -o /dev/null -w '%{time_total}' "$api/metrics")")
    sleep 5
done
t1=$(ticks)
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
cpu=$(echo "scale=2; 100 * ($t1 - $t0) / $hz / $elapsed" | bc)
rss_kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$tracer_pid/status")
metrics=$(curl -s -m 60 "$api/metrics")
series=$(grep -vc '^#' <<< "$metrics")
bytes=$(wc -c <<< "$metrics")
traced=$(awk '/^tracer_traced_processes / {print $2}' <<< "$metrics")
scrape_avg=$(printf '%s\n' "${scrapes[@]}" | awk '{s += $1} END {printf "%.4f", s / NR}')
vmas=$(for p in "${pids[@]}"; do wc -l < "/proc/$p/maps" 2>/dev/null || true; done |
    awk '{s += $1} END {print s}')
printf '{"procs": %d, "cgroups": %d, "secs": %.1f, "cpus": %d, "traced": %s, "vmas": %s, ' \
    "$procs" "$groups" "$elapsed" "$(nproc)" "${traced:-0}" "${vmas:-0}"
printf '"daemon_cpu_pct_of_core": %s, "daemon_rss_kib": %s, "series": %s, ' \
    "$cpu" "$rss_kib" "$series"
printf '"scrape_bytes": %s, "scrape_seconds_avg": %s, "busy_every": %d, "tracer_args": "%s"}\n' \
    "$bytes" "$scrape_avg" "$busy_every" "${TRACER_ARGS:-}"
