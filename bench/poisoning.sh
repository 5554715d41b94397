#!/usr/bin/env bash
# Byzantine peers on Fashion-MNIST, one run of each configuration (not a timed test):
# 4 trainer processes on this machine (as bench/convergence.sh: global batch TARGET,
# EPOCHS epochs), peer 3 Byzantine in the poisoned configurations, gradients averaged
# and parameters with the plain mean or with CenteredClip (groups of at least 3, so
# that the honest peers are a majority in each). Prints, per configuration, the mean test
# accuracy of the honest peers (0-2), its gap to the clean run (the first
# configuration), then a table.
#
#   bench/poisoning.sh BUILD_DIR [--epochs 100] [--target 1024] [--batch 64]
#       [--tau 0] [--reject 10] [--logs DIR] [--configs "clean clean-clip
#       scale-mean scale-clip noise-mean noise-clip"]
#
# Configurations: clean (mean, nobody poisons) / clean-clip (CenteredClip, nobody
# poisons) / scale-mean, scale-clip (peer 3 multiplies its gradients by -1e3) /
# noise-mean, noise-clip (peer 3 sends Gaussian noise of std 1 instead). --tau is
# the CenteredClip radius (RMS per element; 0: automatic), --reject its outlier
# ratio (0: clip only). --logs keeps the trainers' logs there.
set -euo pipefail
usage() { sed -n '2,19p' "$0" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
build=$(cd "$1" && pwd); shift
epochs=100; target=1024; batch=64; tau=0; reject=10; logs=""
configs="clean clean-clip scale-mean scale-clip noise-mean noise-clip"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --epochs) epochs=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --tau) tau=$2; shift 2 ;;
    --reject) reject=$2; shift 2 ;;
    --logs) logs=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    *) usage ;;
  esac
done
source "$(dirname "$0")/swarm_runs.sh"
swarm_setup poisoning "$build"
start_bootstrap poison

base=""
table="config accuracy gap_pp failed_rounds"
for config in $configs; do
  aggregation=mean; poison=none
  case "$config" in
    clean) ;;
    clean-clip) aggregation=centered_clip ;;
    scale-mean) poison=scale ;;
    scale-clip) poison=scale; aggregation=centered_clip ;;
    noise-mean) poison=noise ;;
    noise-clip) poison=noise; aggregation=centered_clip ;;
    *) echo "unknown config $config" >&2; exit 2 ;;
  esac
  peer_pids=()
  for i in 0 1 2 3; do
    peer_poison=none
    [[ $i == 3 ]] && peer_poison=$poison
    "$trainer" --run_id="poison-$config" --initial_peers="$bootstrap" --peer_index=$i \
      --num_peers=4 --batch_size="$batch" --target_group_size=4 --min_group_size=3 \
      --report_every=1000 \
      --codec=none --epochs="$epochs" --target_batch_size="$target" \
      --aggregation=$aggregation --clip_tau="$tau" --clip_reject_ratio="$reject" \
      --poison=$peer_poison \
      > "$work/$config.$i.log" 2>&1 &
    peer_pids+=($!)
  done
  for pid in "${peer_pids[@]}"; do wait "$pid" || true; done
  if [[ -n "$logs" ]]; then mkdir -p "$logs" && cp "$work/$config".*.log "$logs/"; fi
  finals=$(grep -h "final:" "$work/$config".[012].log || true)
  acc=$(field "test accuracy" <<<"$finals")
  failed=$(cat "$work/$config".[012].log | grep -c "(local gradients)" || true)
  [[ -z "$base" ]] && base=$acc
  gap=$(gap_pp "$acc" "$base")
  echo "$config: honest peers' accuracy $acc (vs $base: $gap pp), rounds on local gradients $failed"
  table+=$'\n'"$config $acc $gap $failed"
done
echo
column -t <<<"$table"
