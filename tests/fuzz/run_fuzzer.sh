#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time on a fresh copy of its seed corpus.
# Usage: run_fuzzer.sh SEED_MAKER FUZZER WORK_DIR SECONDS
set -euo pipefail
seed_maker=$1 fuzzer=$2 work=$3 seconds=$4
rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts"
"$seed_maker" "$work/corpus"
"$fuzzer" "$work/corpus" -max_total_time="$seconds" -rss_limit_mb=4096 \
  -artifact_prefix="$work/artifacts/" -print_final_stats=1 2>&1 | tail -n 15
