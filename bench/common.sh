# shellcheck shell=bash
# Shared by the build-comparison scripts (ab.sh, pair.sh, instructions.sh)
# and the per-thread readings (sched.sh, threads.sh, allocs.sh); sourced, not
# run. Expects `set -euo pipefail` and the project root as the working
# directory.

# Prints the calling script's header comment (its lines 2 to $1) and exits 2.
usage() {
    sed -n "2,${1}p" "${BASH_SOURCE[1]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Exits with a message when any of "$@" is not LABEL=PATH naming an executable.
# $1 is the calling script's name for messages.
check_builds() {
    local script=$1
    shift
    local build
    for build in "$@"; do
        case "$build" in
            *=*) ;;
            *) echo "$script: '$build' is not LABEL=PATH" >&2; exit 2 ;;
        esac
        if [ ! -x "${build#*=}" ]; then
            echo "$script: no executable at ${build#*=}" >&2
            exit 2
        fi
    done
}

# Builds the load generator and sets `bench` (its path) and TMPDIR to a
# fresh directory named $1 under the target directory: spawned Hubs keep
# their data directories on the project's disk (a tmpfs /tmp would make
# every fsync free).
prepare_bench() {
    cargo build --release --quiet --bin jecp-bench
    local target_dir
    target_dir=$(cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    bench="$target_dir/release/jecp-bench"
    export TMPDIR="$target_dir/$1"
    rm -rf "$TMPDIR"
    mkdir -p "$TMPDIR"
}

# prepare_bench, and builds the Hub too and sets `hub_bin` (its path): for
# the scripts that spawn the working tree's Hub rather than compare builds.
prepare_hub_and_bench() {
    cargo build --release --quiet --bin jecp-hub
    prepare_bench "$1"
    # shellcheck disable=SC2034 # read by the sourcing script
    hub_bin="$(dirname "$bench")/jecp-hub"
}

# Runs "$bench" (prepare_bench first) in the background with the `run`
# arguments after the first three, output to $3, waits $2 seconds for the
# spawned Hub's set-up and warm-up, and sets `bench_pid` and `hub_pid`.
# Exits with a message naming $1, the calling script, when the Hub is not
# running by then.
start_load() { # SCRIPT SETTLE_S OUTPUT RUN_ARGS...
    local script=$1 settle_s=$2 output=$3
    shift 3
    "$bench" run "$@" > "$output" &
    bench_pid=$!
    sleep "$settle_s"
    hub_pid=$(pgrep -P "$bench_pid" jecp-hub || true)
    if [ -z "$hub_pid" ]; then
        wait "$bench_pid" || true
        echo "$script: the spawned Hub is not running (see $output)" >&2
        exit 1
    fi
}
