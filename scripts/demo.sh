#!/usr/bin/env bash
# The main job: a local swarm demo on this machine. Installs what it needs, builds
# the trainer and the bootstrap node, then runs a bootstrap DHT node and 4
# Fashion-MNIST trainer peers that train one MLP together:
#   - peer0, peer1 and peer2 start at once;
#   - peer3 joins late (after --late seconds): it loads the swarm's state first;
#   - peer1 leaves mid-run (after --leave seconds): the others go on.
# It prints every peer's live progress, then each peer's test accuracy, and writes
# a plot of loss against time per peer (PNG) and the JSON progress logs.
#
#   ./scripts/demo.sh [--epochs 40] [--late 20] [--leave 35] [--out demo-output]
#                     [--codec none|blockwise8|blockwise4|...] [--target 2048]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

epochs=40; late=20; leave=35; out=demo-output; codec=blockwise8; target=2048
while [[ $# -gt 0 ]]; do
  case "$1" in
    --epochs) epochs=$2; shift 2 ;;
    --late) late=$2; shift 2 ;;
    --leave) leave=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --codec) codec=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

./scripts/install_deps.sh
if command -v ccache >/dev/null 2>&1; then
  export CCACHE_DIR="${CCACHE_DIR:-$root/.cache/ccache}"
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
fi
[[ -f build/build.ninja ]] || cmake -S . -B build -G Ninja > /dev/null
cmake --build build --target fashion_mnist_trainer hivemind_dht hivemind_monitor

rm -rf "$out"; mkdir -p "$out"
pids=(); tails=()
cleanup() {
  kill "${pids[@]}" "${tails[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

./build/examples/hivemind_dht --run_id=demo --report_every_s=0 > "$out/dht.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "initial peer:" "$out/dht.log" && break; sleep 0.1; done
bootstrap=$(sed -n 's/^initial peer: //p' "$out/dht.log")
[[ -n "$bootstrap" ]] || { cat "$out/dht.log"; exit 1; }
echo "bootstrap node at $bootstrap"

trainer() {  # trainer INDEX EXTRA_FLAGS...
  local i=$1; shift
  ./build/examples/fashion_mnist_trainer --run_id=demo --initial_peers="$bootstrap" \
    --peer_index="$i" --num_peers=4 --epochs="$epochs" --codec="$codec" \
    --target_batch_size="$target" --target_group_size=4 \
    --progress_log="$out/peer$i.jsonl" "$@" > "$out/peer$i.log" 2>&1 &
  local pid=$!
  pids+=("$pid")  # the trainer itself, so that cleanup stops it
  # Echo the log live; tail exits on its own once the trainer has.
  tail -n +1 --pid="$pid" -f "$out/peer$i.log" &
  tails+=($!)
}
trainer 0
trainer 1 --leave_after="$leave"
trainer 2
sleep "$late"
echo "== what the swarm monitor sees (build/examples/hivemind_monitor) =="
./build/examples/hivemind_monitor --run_id=demo --initial_peers="$bootstrap" \
  --target_batch_size="$target" --count=1 || true
echo "peer3 joins late"
trainer 3
for pid in "${pids[@]:1}"; do wait "$pid" || true; done
for pid in "${tails[@]}"; do wait "$pid" || true; done

echo
echo "== results =="
grep -h "final:" "$out"/peer*.log | sort
/usr/bin/python3 examples/fashion_mnist/plot_progress.py "$out"/peer*.jsonl \
  --output "$out/loss.png"
echo "plot: $out/loss.png; logs and JSON progress: $out/"
