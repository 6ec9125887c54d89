#!/usr/bin/env bash
# How many heap allocations each Hub thread makes per request during a
# closed-loop scenario: puts uprobes on mimalloc's entry points in the Hub
# binary (`mi_malloc_aligned`, `mi_zalloc_aligned`, `mi_realloc_aligned`,
# which every Rust allocation goes through), counts them per thread with
# `perf stat` for a window in the middle of the run, and divides by the Hub's
# `writev` calls in the same window (one per answer: hyper writes each
# response, head and body, with one `writev`). The probes slow the Hub down a
# lot, so the run's own req/s is meaningless here; counts per request are not.
# With ALLOCS_SITES=N it then records one more window with call graphs and
# prints, per thread name, the N call sites making the most allocations
# (named by the innermost Hub function on the stack). This is how
# BENCHMARKS.md's "Allocations per request" was measured. Needs `perf` with
# uprobe support and root (or `perf_event_paranoid` = -1).
#
# Usage: bench/allocs.sh SCENARIO [SCENARIO...]   (e.g. invoke-replay invoke-echo)
# Knobs (environment): ALLOCS_CONCURRENCY (256), ALLOCS_AGENTS (64),
# ALLOCS_DURABILITY (immediate), ALLOCS_SETTLE_S (4), ALLOCS_WINDOW_S (2),
# ALLOCS_SITES (unset: counts only).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=bench/common.sh
. bench/common.sh
[ $# -ge 1 ] || usage 20

prepare_hub_and_bench allocs-tmp
settle_s=${ALLOCS_SETTLE_S:-4}
window_s=${ALLOCS_WINDOW_S:-2}
sites=${ALLOCS_SITES:-}

group=jecp_allocs
probes=(malloc=mi_malloc_aligned zalloc=mi_zalloc_aligned realloc=mi_realloc_aligned)
# Probes are system-wide kernel objects: remove ours however the script ends.
remove_probes() { perf probe -q -d "$group:*" 2> /dev/null || true; }
remove_probes
trap remove_probes EXIT
for probe in "${probes[@]}"; do
    if ! perf probe -q -x "$hub_bin" --add "$group:$probe"; then
        echo "bench/allocs.sh: cannot probe ${probe#*=} in $hub_bin (is mimalloc the allocator?)" >&2
        exit 1
    fi
done
events="$group:malloc,$group:zalloc,$group:realloc"

for scenario in "$@"; do
    run_s=$((settle_s + window_s + 2))
    [ -n "$sites" ] && run_s=$((run_s + 2))
    start_load bench/allocs.sh "$settle_s" "$TMPDIR/run.json" \
        --hub-bin "$hub_bin" --scenario "$scenario" --duration-s "$run_s" \
        --warmup-s 1 --concurrency "${ALLOCS_CONCURRENCY:-256}" \
        --agents "${ALLOCS_AGENTS:-64}" --durability "${ALLOCS_DURABILITY:-immediate}" \
        --json --quiet
    perf stat --per-thread -x, -e "$events,syscalls:sys_enter_writev" -p "$hub_pid" \
        -o "$TMPDIR/counts.csv" -- sleep "$window_s" 2> /dev/null
    if [ -n "$sites" ]; then
        # One second is plenty: the probes fire ~10^5 times a second, each
        # with a 16 KiB stack copy.
        perf record -q -e "$events,syscalls:sys_enter_writev" --call-graph dwarf,16384 \
            -p "$hub_pid" -o "$TMPDIR/sites.data" -- sleep 1 > /dev/null 2>&1
    fi
    wait "$bench_pid"
    echo "$scenario:"
    python3 - "$TMPDIR/counts.csv" <<'PY'
import collections
import re
import sys

# --per-thread CSV lines: "<comm>-<tid>,<count>,<unit>,<event>,..."
counts = collections.defaultdict(collections.Counter)
for line in open(sys.argv[1]):
    fields = line.strip().split(",")
    if len(fields) < 4 or not fields[1].isdigit():
        continue
    thread = re.sub(r"-\d+$", "", fields[0])
    counts[fields[3].split(":")[-1]][thread] += int(fields[1])
answers = sum(counts["sys_enter_writev"].values())
if answers == 0:
    sys.exit("  no answers were written in the window (did the run end early?)")
allocations = collections.Counter()
for event in ("malloc", "zalloc", "realloc"):
    allocations.update(counts[event])
print(f"  {answers:,} answers in the window")
for thread, n in allocations.most_common():
    print(f"  {thread:20} {n / answers:6.1f} allocations per request")
print(f"  {'all threads':20} {sum(allocations.values()) / answers:6.1f} allocations per request")
PY
    if [ -n "$sites" ]; then
        perf script -i "$TMPDIR/sites.data" -F comm,event,ip,sym > "$TMPDIR/sites.txt" 2> /dev/null
        python3 - "$sites" "$TMPDIR/sites.txt" <<'PY'
import collections
import sys

top, script_path = int(sys.argv[1]), sys.argv[2]
answers = 0
by_thread = collections.defaultdict(collections.Counter)


def settle(header, frames):
    global answers
    if header is None:
        return
    if "sys_enter_writev" in header:
        answers += 1
        return
    # The innermost frame in the Hub's own code names the site; allocations
    # made wholly inside a dependency are named by the dependency's frame
    # just above the allocator.
    site = next((f for f in frames if "jecp_hub" in f), None)
    if site is None:
        site = next((f for f in frames if not f.startswith(("mi_", "_mi_", "__rust", "alloc"))), "?")
    by_thread[header.split()[0]][site[:110]] += 1


header, frames = None, []
for line in open(script_path):
    if not line.strip():
        settle(header, frames)
        header, frames = None, []
    elif not line.startswith("\t"):  # the header; its frames are tab-indented
        header, frames = line, []
    else:
        parts = line.strip().split(None, 1)
        frames.append(parts[-1])
settle(header, frames)
if answers == 0:
    sys.exit("  no answers were written in the call-graph window")
for thread, sites in sorted(by_thread.items()):
    print(f"  {thread}: top call sites, allocations per request")
    for site, n in sites.most_common(top):
        print(f"    {n / answers:5.2f}  {site}")
PY
    fi
done
