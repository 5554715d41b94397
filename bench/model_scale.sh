#!/usr/bin/env bash
# What the swarm costs a peer as the model grows: for each model size, PEERS
# model_scale processes (bench/model_scale.cc) train through a swarm on this machine,
# then allreduce_vs_gloo averages the same number of floats among as many ranks, in
# the same run, as the reference for one epoch's rounds. Prints each peer's summary
# and a table: memory the swarm added (peak RSS over the bare model + Adam, in units
# of the model's fp32 bytes) and the epoch's overhead (epoch time minus forward and
# backward; epochs after the first) against the all-reduce's time.
#
#   bench/model_scale.sh BUILD_DIR [--mparams "10 100"] [--peers 2] [--mode grad]
#       [--codec none] [--epochs 3] [other model_scale flags]
set -euo pipefail
usage() { sed -n '2,11p' "$0" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
build=$(cd "$1" && pwd); shift
here=$(cd "$(dirname "$0")" && pwd)
sizes="10 100"; peers=2; mode=grad; codec=none; epochs=3; extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mparams) sizes=$2; shift 2 ;;
    --peers) peers=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --codec) codec=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
[[ -x "$build/bench/model_scale" ]] || { echo "build target model_scale" >&2; exit 2; }
work=$(mktemp -d /tmp/model_scale.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

"$build/examples/hivemind_dht" --run_id=scale --report_every_s=0 > "$work/dht.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "initial peer:" "$work/dht.log" && break; sleep 0.1; done
bootstrap=$(sed -n 's/^initial peer: //p' "$work/dht.log")

# field NAME FILE: the value of NAME=... on the summary line.
field() { grep -o "model_scale: params=.*" "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# The mean of a comma-separated list without its first entry (the warm-up epoch).
mean_after_first() {
  awk -F, '{ s = 0; n = 0; for (i = 2; i <= NF; ++i) { s += $i; n++ } if (n) printf "%.3f", s / n; else printf "%.3f", $1 }'
}

table="mparams peer added_x base_mb end_mb epoch_s compute_s overhead_s allreduce_s overhead_vs_allreduce"
for size in $sizes; do
  run_pids=()
  for i in $(seq 0 $((peers - 1))); do
    "$build/bench/model_scale" --initial_peers="$bootstrap" --run_id="scale-$size-$mode" \
      --peers="$peers" --mparams="$size" --mode="$mode" --codec="$codec" \
      --epochs="$epochs" "${extra[@]}" > "$work/$size.$i.log" 2>&1 &
    run_pids+=($!)
  done
  for pid in "${run_pids[@]}"; do wait "$pid" || true; done
  params=$(field params "$work/$size.0.log")
  [[ -n "$params" ]] || { cat "$work/$size.0.log" >&2; exit 1; }
  "$here/run_allreduce.sh" "$build" --peers "$peers" --numel "$params" --codec "$codec" \
    --repeats 3 > "$work/$size.allreduce.log" 2>&1 || true
  allreduce=$(sed -n 's/^hivemind: round median=\([0-9.]*\)s.*/\1/p' "$work/$size.allreduce.log")
  for i in $(seq 0 $((peers - 1))); do
    log="$work/$size.$i.log"
    grep "model_scale:" "$log" | tail -n 1
    epoch=$(field epoch_s "$log" | mean_after_first)
    compute=$(field compute_s "$log" | mean_after_first)
    overhead=$(awk -v e="$epoch" -v c="$compute" 'BEGIN { printf "%.3f", e - c }')
    ratio=$(awk -v o="$overhead" -v a="${allreduce:-0}" 'BEGIN { if (a > 0) printf "%.2f", o / a; else print "n/a" }')
    table+=$'\n'"$size $i $(field added_x "$log") $(field base_hwm_mb "$log") $(field end_hwm_mb "$log") $epoch $compute $overhead ${allreduce:-n/a} $ratio"
  done
done
echo
echo "mode=$mode codec=$codec peers=$peers epochs=$epochs (epoch figures: mean of epochs 2..)"
column -t <<<"$table"
