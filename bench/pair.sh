#!/usr/bin/env bash
# Compares two Hub builds by loading them at the same time: each round spawns
# a Hub from each binary and drives both at once, each with its own
# jecp-bench, so both see the same machine (CPU steal, cache pressure, disk)
# for the whole measured window. Prints each Hub's CPU µs per request and
# their ratio per round, then the mean ratio. On a shared VM where single runs
# move by ±15%, this sees a 3-5% difference that alternating runs
# (bench/ab.sh) cannot. Throughput is not compared: the two runs split the box.
#
# Usage: bench/pair.sh SCENARIO A=PATH B=PATH
#   e.g. cp target/release/jecp-hub /tmp/hub-before   (then change, rebuild)
#        bench/pair.sh invoke-echo before=/tmp/hub-before after=target/release/jecp-hub
# Knobs (environment): PAIR_ROUNDS (4), PAIR_DURATION_S (8), PAIR_WARMUP_S (1),
# PAIR_CONCURRENCY (128 per Hub), PAIR_AGENTS (64), PAIR_DURABILITY (immediate).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=bench/common.sh
. bench/common.sh
[ $# -eq 3 ] || usage 14
scenario=$1
check_builds bench/pair.sh "$2" "$3"
labels=("${2%%=*}" "${3%%=*}")
paths=("${2#*=}" "${3#*=}")
prepare_bench pair-tmp
results="$TMPDIR/results.tsv"
: > "$results"

run_one() { # PATH OUTPUT
    "$bench" run --hub-bin "$1" --scenario "$scenario" \
        --duration-s "${PAIR_DURATION_S:-8}" --warmup-s "${PAIR_WARMUP_S:-1}" \
        --concurrency "${PAIR_CONCURRENCY:-128}" --agents "${PAIR_AGENTS:-64}" \
        --durability "${PAIR_DURABILITY:-immediate}" --json --quiet > "$2"
}

hub_cpu() { # OUTPUT
    python3 -c '
import json, sys
cpu = json.load(open(sys.argv[1]))["scenarios"][0].get("hub_cpu_us_per_request")
print("nan" if cpu is None else "%.2f" % cpu)' "$1"
}

for round in $(seq "${PAIR_ROUNDS:-4}"); do
    # Alternate which Hub starts first, so neither always gets a head start.
    if [ $((round % 2)) -eq 1 ]; then first=0; else first=1; fi
    second=$((1 - first))
    run_one "${paths[$first]}" "$TMPDIR/run$first.json" &
    first_pid=$!
    run_one "${paths[$second]}" "$TMPDIR/run$second.json" &
    second_pid=$!
    wait "$first_pid"
    wait "$second_pid"
    cpu_a=$(hub_cpu "$TMPDIR/run0.json")
    cpu_b=$(hub_cpu "$TMPDIR/run1.json")
    printf '%s\t%s\n' "$cpu_a" "$cpu_b" >> "$results"
    ratio=$(python3 -c "print('%.3f' % ($cpu_b / $cpu_a))")
    echo "round $round:  ${labels[0]} $cpu_a µs  ${labels[1]} $cpu_b µs  (${labels[1]}/${labels[0]} $ratio)"
done

python3 - "$results" "${labels[0]}" "${labels[1]}" <<'EOF'
import math, sys
pairs = [tuple(map(float, line.split("\t"))) for line in open(sys.argv[1])]
a, b = sys.argv[2], sys.argv[3]
ratios = [y / x for x, y in pairs]
mean = sum(ratios) / len(ratios)
spread = math.sqrt(sum((r - mean) ** 2 for r in ratios) / max(1, len(ratios) - 1))
print(f"Hub CPU per request, {b}/{a}: mean {mean:.3f} (sd {spread:.3f}, {len(ratios)} rounds); "
      f"means {sum(x for x, _ in pairs) / len(pairs):.1f} / {sum(y for _, y in pairs) / len(pairs):.1f} µs")
EOF
rm -rf "$TMPDIR"
