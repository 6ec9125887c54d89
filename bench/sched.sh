#!/usr/bin/env bash
# Where the cores go during a closed-loop scenario: records every context
# switch and wake-up on the machine for one second of load (perf's
# sched_switch and sched_wakeup tracepoints), then prints each busy thread's
# share of that second running, runnable and asleep, and how long a CPU sat
# idle while a thread waited runnable on another CPU (bench/sched_states.py).
# Threads are labelled hub:NAME or load:NAME. This is how BENCHMARKS.md's
# "Why the other core idles" was measured; it needs `perf` and permission to
# record tracepoints system-wide (root, or kernel.perf_event_paranoid = -1).
#
# Usage: bench/sched.sh [SCENARIO]      (default invoke-echo)
# Knobs (environment): SCHED_CONCURRENCY (256), SCHED_AGENTS (64),
# SCHED_DURABILITY (immediate), SCHED_SETTLE_S (4: seconds from the start to
# the recorded second; setup and warm-up must be over by then).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=bench/common.sh
. bench/common.sh
[ $# -le 1 ] || usage 14
scenario=${1:-invoke-echo}
command -v perf > /dev/null || { echo "bench/sched.sh: perf is not installed" >&2; exit 2; }

prepare_hub_and_bench sched-tmp
settle_s=${SCHED_SETTLE_S:-4}

start_load bench/sched.sh "$settle_s" "$TMPDIR/run.txt" \
    --hub-bin "$hub_bin" --scenario "$scenario" --duration-s $((settle_s + 4)) --warmup-s 1 \
    --concurrency "${SCHED_CONCURRENCY:-256}" --agents "${SCHED_AGENTS:-64}" \
    --durability "${SCHED_DURABILITY:-immediate}" --quiet
labels="$TMPDIR/labels.txt"
for task in /proc/"$hub_pid"/task/* /proc/"$bench_pid"/task/*; do
    case "$task" in /proc/"$hub_pid"/*) side=hub ;; *) side=load ;; esac
    echo "$(basename "$task") $side:$(cat "$task/comm" 2> /dev/null || echo gone)"
done > "$labels"
if ! perf record -a -e sched:sched_switch -e sched:sched_wakeup -m 2048 \
    -o "$TMPDIR/sched.data" -- sleep 1 > /dev/null 2> "$TMPDIR/perf.err"; then
    wait "$bench_pid" || true
    echo "bench/sched.sh: perf could not record tracepoints:" >&2
    cat "$TMPDIR/perf.err" >&2
    exit 1
fi
wait "$bench_pid"
echo "load: $(tail -1 "$TMPDIR/run.txt")"
perf script -i "$TMPDIR/sched.data" 2> /dev/null > "$TMPDIR/sched.txt"
python3 bench/sched_states.py "$TMPDIR/sched.txt" "$labels"
