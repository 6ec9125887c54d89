#!/usr/bin/env bash
# Compares Hub builds on one scenario: spawns a fresh Hub from each binary in
# turn, round after round, and prints req/s and the Hub's CPU µs per request
# for every run, then the means. Alternating rounds lets every build see the
# same noise of a shared machine; the CPU figure moves much less than req/s.
#
# Usage: bench/ab.sh SCENARIO LABEL=PATH [LABEL=PATH ...]
#   e.g. cp target/release/jecp-hub /tmp/hub-before   (then change, rebuild)
#        bench/ab.sh invoke-echo before=/tmp/hub-before after=target/release/jecp-hub
# Knobs (environment): AB_ROUNDS (4), AB_DURATION_S (6), AB_WARMUP_S (1),
# AB_CONCURRENCY (256), AB_AGENTS (64), AB_DURABILITY (immediate).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=bench/common.sh
. bench/common.sh
[ $# -ge 2 ] || usage 11
scenario=$1
shift
check_builds bench/ab.sh "$@"
prepare_bench ab-tmp
results="$TMPDIR/results.tsv"
: > "$results"

for round in $(seq "${AB_ROUNDS:-4}"); do
    line="round $round:"
    for build in "$@"; do
        label=${build%%=*}
        path=${build#*=}
        figures=$("$bench" run --hub-bin "$path" --scenario "$scenario" \
            --duration-s "${AB_DURATION_S:-6}" --warmup-s "${AB_WARMUP_S:-1}" \
            --concurrency "${AB_CONCURRENCY:-256}" --agents "${AB_AGENTS:-64}" \
            --durability "${AB_DURABILITY:-immediate}" --json --quiet \
            | python3 -c '
import json, sys
result = json.load(sys.stdin)["scenarios"][0]
cpu = result.get("hub_cpu_us_per_request")
print("%.0f\t%s" % (result["throughput_per_s"], "%.1f" % cpu if cpu is not None else "nan"))')
        printf '%s\t%s\n' "$label" "$figures" >> "$results"
        line="$line  $label $(cut -f1 <<< "$figures") req/s, $(cut -f2 <<< "$figures") µs"
    done
    echo "$line"
done

python3 - "$results" <<'EOF'
import sys
from collections import OrderedDict
runs = OrderedDict()
for line in open(sys.argv[1]):
    label, rps, cpu = line.rstrip("\n").split("\t")
    runs.setdefault(label, []).append((float(rps), float(cpu)))
for label, figures in runs.items():
    rps = sum(r for r, _ in figures) / len(figures)
    cpu = sum(c for _, c in figures) / len(figures)
    print(f"mean {label}: {rps:,.0f} req/s, Hub {cpu:.1f} µs CPU per request ({len(figures)} runs)")
EOF
rm -rf "$TMPDIR"
