#!/usr/bin/env bash
# Counts the user-space instructions a Hub build executes per request, under
# valgrind's callgrind: two runs of the same scenario with REQUESTS_LOW and
# REQUESTS_HIGH requests (start-up and agent set-up cancel out in the
# difference). The count repeats to within 0.1% run to run, where CPU time on
# a shared VM moves by ±15%, so it shows the effect of a change to the
# Hub's own code exactly. It does not see the kernel (syscalls, TCP, fsync)
# or cache misses, and valgrind hides some CPU features (SHA extensions), so
# confirm a win in CPU time with bench/pair.sh.
#
# Usage: bench/instructions.sh SCENARIO LABEL=PATH [LABEL=PATH ...]
#   e.g. bench/instructions.sh invoke-echo before=/tmp/hub-before after=target/release/jecp-hub
# Knobs (environment): REQUESTS_LOW (1000), REQUESTS_HIGH (5000),
# INSTR_CONCURRENCY (8), INSTR_AGENTS (8). Needs valgrind (apt-get install valgrind).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=bench/common.sh
. bench/common.sh
[ $# -ge 2 ] || usage 14
if ! command -v valgrind > /dev/null; then
    echo "bench/instructions.sh: valgrind is not installed (apt-get install valgrind)" >&2
    exit 2
fi
scenario=$1
shift
low=${REQUESTS_LOW:-1000}
high=${REQUESTS_HIGH:-5000}
if [ "$high" -le "$low" ]; then
    echo "bench/instructions.sh: REQUESTS_HIGH must be above REQUESTS_LOW" >&2
    exit 2
fi

check_builds bench/instructions.sh "$@"
prepare_bench instructions-tmp

# Instructions of one spawned Hub serving `requests` requests.
count() { # HUB_PATH REQUESTS
    local wrapper="$TMPDIR/hub-under-callgrind"
    rm -f "$TMPDIR"/callgrind.*
    cat > "$wrapper" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file="$TMPDIR/callgrind.%p" "$1" "\$@"
EOF
    chmod +x "$wrapper"
    "$bench" run --hub-bin "$wrapper" --scenario "$scenario" --requests "$2" \
        --duration-s 600 --warmup-s 0 --concurrency "${INSTR_CONCURRENCY:-8}" \
        --agents "${INSTR_AGENTS:-8}" --quiet > /dev/null
    # The spawned Hub has exited (SIGTERM) and callgrind has written its totals.
    awk '/^summary:/ {print $2}' "$TMPDIR"/callgrind.*
}

for build in "$@"; do
    label=${build%%=*}
    path=${build#*=}
    few=$(count "$path" "$low")
    many=$(count "$path" "$high")
    echo "$label: $(( (many - few) / (high - low) )) instructions per $scenario request (user space, all Hub threads)"
done
rm -rf "$TMPDIR"
