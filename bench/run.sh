#!/usr/bin/env bash
# Regenerates every figure in BENCHMARKS.md: builds release binaries, runs the
# HTTP scenarios against a freshly spawned Hub in each durability mode, runs
# the criterion micro-benchmarks with short measurement times, and rewrites
# the section between <!-- BEGIN GENERATED --> and <!-- END GENERATED -->.
#
# Usage: bench/run.sh            (about 10 minutes on 2 cores after the first build)
# Knobs (environment): BENCH_DURATION_S (5), BENCH_WARMUP_S (1), BENCH_ROUNDS (5),
# BENCH_CONCURRENCY (256), BENCH_AGENTS (64), BENCH_OPEN_RATE (2000 req/s),
# BENCH_CLIENT_THREADS (1), BENCH_SKIP_CRITERION (unset).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration_s=${BENCH_DURATION_S:-5}
warmup_s=${BENCH_WARMUP_S:-1}
# The closed-loop scenarios repeat this many times on the same Hub; the
# report takes medians (one 5 s run of health varies by ±15% on a shared box).
rounds=${BENCH_ROUNDS:-5}
concurrency=${BENCH_CONCURRENCY:-256}
agents=${BENCH_AGENTS:-64}
open_rate=${BENCH_OPEN_RATE:-2000}
client_threads=${BENCH_CLIENT_THREADS:-1}

target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results="$target_dir/bench-results/$stamp"
mkdir -p "$results"
# A fresh criterion directory, so only this run's estimates reach the tables.
export CRITERION_HOME="$results/criterion"
# Spawned Hubs put their data directories under TMPDIR; keep them on the
# project's disk (a tmpfs /tmp would make every fsync free).
export TMPDIR="$results"

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && ! git diff --quiet HEAD -- src benches bench Cargo.toml 2>/dev/null; then
    commit="$commit-dirty"
fi

# The command as run, with the knobs that were set, for the report's header.
command="$(env | { grep -E '^BENCH_[A-Z_]+=' || true; } | sort | tr '\n' ' ')bench/run.sh"

echo "== building release binaries" >&2
cargo build --release --bins --quiet
bench_bin="$target_dir/release/jecp-bench"
hub_bin="$target_dir/release/jecp-hub"

common=(--hub-bin "$hub_bin" --duration-s "$duration_s" --warmup-s "$warmup_s"
        --agents "$agents" --client-threads "$client_threads" --json)
for mode in immediate batched; do
    echo "== HTTP scenarios, $mode durability, $concurrency connections" >&2
    "$bench_bin" run "${common[@]}" --durability "$mode" --concurrency "$concurrency" \
        --rounds "$rounds" --scenario health,invoke-echo,invoke-replay,invoke-mixed,register \
        > "$results/closed-$mode.json"
    echo "== open loop, $mode durability, $open_rate req/s" >&2
    "$bench_bin" run "${common[@]}" --durability "$mode" --rate "$open_rate" \
        --scenario health,invoke-echo \
        > "$results/open-$mode.json"
done

if [ -z "${BENCH_SKIP_CRITERION:-}" ]; then
    # Criterion benches declared in Cargo.toml; benches/ledger.rs joins when present.
    for bench in hub_micro auth ledger; do
        if grep -q "^name = \"$bench\"" Cargo.toml && [ -f "benches/$bench.rs" ]; then
            echo "== criterion: $bench" >&2
            BENCH_DIR="$results" cargo bench --quiet --bench "$bench" -- \
                --warm-up-time 1 --measurement-time 2 >"$results/criterion-$bench.log" 2>&1 \
                || { echo "cargo bench --bench $bench failed; see $results/criterion-$bench.log" >&2; exit 1; }
        else
            echo "== criterion: $bench skipped (not in this tree)" >&2
        fi
    done
fi

"$bench_bin" report \
    "$results/closed-immediate.json" "$results/open-immediate.json" \
    "$results/closed-batched.json" "$results/open-batched.json" \
    --criterion-dir "$CRITERION_HOME" \
    --single-charge-latency "$results/single-charge-latency.json" \
    --commit "$commit" \
    --command "$command" \
    --into BENCHMARKS.md
echo "== BENCHMARKS.md updated from $results" >&2
