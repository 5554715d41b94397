#!/usr/bin/env bash
# Convergence on Fashion-MNIST, one run of each configuration (not a timed test):
# single-process training against 4 peers on this machine with the same global
# batch (TARGET samples per optimizer step) and the same total samples (EPOCHS x
# TARGET), for several codecs and modes. Prints, per configuration, the mean test
# accuracy of the peers, its gap to the single-process run, the bytes each peer
# sent and the compute utilization (share of wall time not spent waiting for
# averaging), then a table.
#
#   bench/convergence.sh BUILD_DIR [--epochs 100] [--target 1024] [--batch 64]
#       [--configs "none blockwise8 blockwise4 blockwise4+ef diloco delayed"]
#
# Configurations: none / blockwise8 / blockwise4 (codec, no error feedback) /
# blockwise4+ef (with error feedback) / diloco (local Adam steps, pseudo-gradients
# averaged every 50 x TARGET samples, outer Nesterov SGD) / delayed (raw gradients,
# averaging overlapped with the next epoch's computation).
set -euo pipefail
usage() { sed -n '2,17p' "$0" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
build=$(cd "$1" && pwd); shift
epochs=100; target=1024; batch=64
configs="none blockwise8 blockwise4 blockwise4+ef diloco delayed"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --epochs) epochs=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    *) usage ;;
  esac
done
source "$(dirname "$0")/swarm_runs.sh"
swarm_setup convergence "$build"

"$trainer" --standalone --epochs="$epochs" --target_batch_size="$target" \
  > "$work/standalone.log" 2>&1
base=$(field "test accuracy" < "$work/standalone.log")
echo "single process: test accuracy $base ($(grep -o '[0-9.]* s$' "$work/standalone.log"))"

start_bootstrap conv

table="config accuracy gap_pp bytes_per_peer utilization"
for config in $configs; do
  flags=(--codec=none --epochs="$epochs" --target_batch_size="$target")
  case "$config" in
    none|blockwise8|blockwise4) flags[0]=--codec=$config; flags+=(--grad_error_feedback=false) ;;
    blockwise4+ef) flags[0]=--codec=blockwise4 ;;
    diloco)
      flags=(--codec=none --diloco_outer_lr=0.7 --epochs=$(( (epochs + 49) / 50 ))
             --target_batch_size=$(( target * 50 )))
      ;;
    delayed) flags+=(--delay_updates --average_state_every=10) ;;
    *) echo "unknown config $config" >&2; exit 2 ;;
  esac
  peer_pids=()
  for i in 0 1 2 3; do
    "$trainer" --run_id="conv-$config" --initial_peers="$bootstrap" --peer_index=$i \
      --num_peers=4 --batch_size="$batch" --target_group_size=4 --report_every=1000 \
      "${flags[@]}" > "$work/$config.$i.log" 2>&1 &
    peer_pids+=($!)
  done
  for pid in "${peer_pids[@]}"; do wait "$pid" || true; done
  finals=$(grep -h "final:" "$work/$config".*.log || true)
  acc=$(field "test accuracy" <<<"$finals")
  bytes=$(field "bytes sent" <<<"$finals")
  util=$(field "utilization" <<<"$finals")
  gap=$(gap_pp "$acc" "$base")
  echo "$config: accuracy $acc (gap $gap pp), bytes sent per peer $bytes, utilization $util"
  table+=$'\n'"$config $acc $gap $bytes $util"
done
echo
column -t <<<"$table"
