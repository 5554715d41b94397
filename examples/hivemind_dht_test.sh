#!/usr/bin/env bash
# Starts hivemind_dht, joins it with a second instance through the printed address,
# checks that both see each other, and stops both with SIGTERM (exit status 0).
set -euo pipefail
binary=$1
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$binary" --report_every_s=1 > "$work/first.log" 2>&1 &
first=$!
for _ in $(seq 100); do grep -q "initial peer:" "$work/first.log" && break; sleep 0.1; done
address=$(sed -n 's/^initial peer: //p' "$work/first.log")
[[ -n "$address" ]] || { cat "$work/first.log"; exit 1; }
"$binary" --initial_peers="$address" --report_every_s=1 > "$work/second.log" 2>&1 &
second=$!
for _ in $(seq 100); do grep -q "known nodes: [1-9]" "$work/first.log" && break; sleep 0.1; done
grep -q "known nodes: [1-9]" "$work/first.log" || { cat "$work"/*.log; exit 1; }
kill -TERM "$second" "$first"
wait "$second"
wait "$first"
grep -q stopping "$work/first.log"
echo "hivemind_dht: bootstrap at $address, joined, stopped cleanly"
