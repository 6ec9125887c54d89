#!/usr/bin/env bash
# What each thread costs per request during a closed-loop scenario: reads
# user and system CPU time of every thread of the spawned Hub and of the load
# generator from /proc/PID/task/TID/stat at two moments a few seconds apart
# in the middle of the run, and prints, per thread name, user and system µs
# per request (the requests of that window are estimated from the run's
# measured throughput). Threads with the same name are summed. Needs only
# /proc, not perf. This is how BENCHMARKS.md's "Where a billed call's premium
# goes" was measured: run it for health, invoke-replay and invoke-echo to see
# which threads the billed path adds work to.
#
# Usage: bench/threads.sh SCENARIO [SCENARIO...]   (e.g. health invoke-echo)
# Knobs (environment): THREADS_CONCURRENCY (256), THREADS_AGENTS (64),
# THREADS_DURABILITY (immediate), THREADS_SETTLE_S (4: seconds from the start
# to the window; setup and warm-up must be over by then), THREADS_WINDOW_S (3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=bench/common.sh
. bench/common.sh
[ $# -ge 1 ] || usage 15

prepare_hub_and_bench threads-tmp
settle_s=${THREADS_SETTLE_S:-4}
window_s=${THREADS_WINDOW_S:-3}

# One line per thread: SIDE:NAME TID utime stime (clock ticks). The command name
# in `stat` is in parentheses and may hold spaces, so fields are counted
# after the closing one.
snapshot() { # HUB_PID BENCH_PID
    local task side
    for task in /proc/"$1"/task/* /proc/"$2"/task/*; do
        case "$task" in /proc/"$1"/*) side=hub ;; *) side=load ;; esac
        echo "$side:$(tr ' ' _ < "$task/comm" 2> /dev/null || echo gone)" "$(basename "$task")" \
            "$(cut -d')' -f2 "$task/stat" 2> /dev/null | awk '{print $12, $13}')"
    done
}

for scenario in "$@"; do
    start_load bench/threads.sh "$settle_s" "$TMPDIR/run.json" \
        --hub-bin "$hub_bin" --scenario "$scenario" --duration-s $((settle_s + window_s + 2)) \
        --warmup-s 1 --concurrency "${THREADS_CONCURRENCY:-256}" \
        --agents "${THREADS_AGENTS:-64}" --durability "${THREADS_DURABILITY:-immediate}" \
        --json --quiet
    snapshot "$hub_pid" "$bench_pid" > "$TMPDIR/before.txt"
    sleep "$window_s"
    snapshot "$hub_pid" "$bench_pid" > "$TMPDIR/after.txt"
    wait "$bench_pid"
    python3 - "$TMPDIR/run.json" "$TMPDIR/before.txt" "$TMPDIR/after.txt" "$window_s" \
        "$(getconf CLK_TCK)" <<'PY'
import collections
import json
import sys

run_path, before_path, after_path, window_s, ticks_per_s = sys.argv[1:6]
scenario = json.load(open(run_path))["scenarios"][0]
requests = scenario["throughput_per_s"] * float(window_s)
us_per_tick = 1e6 / float(ticks_per_s)


def read(path):
    # (name, tid) -> (user, system); a thread gone mid-read has no times.
    times = {}
    for line in open(path):
        fields = line.split()
        if len(fields) == 4:
            times[(fields[0], fields[1])] = (int(fields[2]), int(fields[3]))
    return times


before, after = read(before_path), read(after_path)
per_name = collections.defaultdict(lambda: [0, 0])
for (name, tid), (user, system) in after.items():
    # A thread started within the window counts from zero; one that ended
    # within it is not seen (the Hub's and the load generator's threads all
    # live for the whole run).
    user0, system0 = before.get((name, tid), (0, 0))
    per_name[name][0] += user - user0
    per_name[name][1] += system - system0
print(f"{scenario['scenario']}: {scenario['throughput_per_s']:,.0f} req/s; "
      f"Hub {scenario['hub_cpu_us_per_request']:.1f} / load "
      f"{scenario['client_cpu_us_per_request']:.1f} µs per request over the run")
for side in ("hub", "load"):
    total = [0.0, 0.0]
    for name, (user, system) in sorted(per_name.items()):
        if not name.startswith(side + ":") or user + system == 0:
            continue
        user_us, system_us = (t * us_per_tick / requests for t in (user, system))
        total[0] += user_us
        total[1] += system_us
        print(f"  {name:28} user {user_us:6.2f}  sys {system_us:6.2f} µs/req")
    print(f"  {side + ' total':28} user {total[0]:6.2f}  sys {total[1]:6.2f} µs/req")
PY
done
