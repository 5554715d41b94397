#!/usr/bin/env bash
# A trainer peer killed with SIGKILL mid-epoch does not stop the others: a bootstrap
# node and 3 fashion_mnist_trainer processes; one is SIGKILLed once the swarm has
# passed epoch 2; the two others must still reach the final epoch, in time, and
# report their accuracy.
#   kill_test.sh TRAINER DHT_BINARY
set -euo pipefail
trainer=$1
dht=$2
work=$(mktemp -d)
pids=()
cleanup() { kill -9 "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$dht" --run_id=kill --report_every_s=0 > "$work/dht.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "initial peer:" "$work/dht.log" && break; sleep 0.1; done
bootstrap=$(sed -n 's/^initial peer: //p' "$work/dht.log")
[[ -n "$bootstrap" ]] || { cat "$work/dht.log"; exit 1; }

for i in 0 1 2; do
  "$trainer" --run_id=kill --initial_peers="$bootstrap" --peer_index=$i --num_peers=3 \
    --epochs=8 --target_batch_size=1024 --target_group_size=3 --report_every=1 \
    --max_seconds=150 > "$work/peer$i.log" 2>&1 &
  pids+=($!)
done
victim=${pids[3]}
for _ in $(seq 600); do grep -q "epoch 2 done" "$work/peer2.log" && break; sleep 0.1; done
grep -q "epoch 2 done" "$work/peer2.log" || { cat "$work"/peer*.log; exit 1; }
kill -9 "$victim"
echo "killed peer2 (pid $victim) after epoch 2"
status=0
for i in 0 1; do
  wait "${pids[$((i + 1))]}" || status=1
  if ! grep -q "final: epoch 8," "$work/peer$i.log"; then
    echo "peer$i did not reach epoch 8:"; tail -n 20 "$work/peer$i.log"; status=1
  fi
done
grep -h "final:" "$work"/peer*.log
exit $status
