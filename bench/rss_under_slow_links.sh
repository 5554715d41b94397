#!/usr/bin/env bash
# Memory under slow links (hivemind's issue #264): PEERS peers on an emulated WAN
# (bench/wan.sh: network namespaces, links capped at RATE each way) run ROUNDS
# averaging rounds of a NUMEL-float vector with bench/rss_rounds; each samples its RSS
# after round WARMUP and after the last round and fails if it grew by more than
# MAX_GROWTH. A bootstrap DHT node runs on one more host (averager mode). Prints every
# peer's summary line and exits non-zero if any peer failed. Needs root and iproute2.
#
#   bench/rss_under_slow_links.sh BUILD_DIR [--peers 4] [--rate 50mbit]
#       [--rounds 1000] [--warmup 100] [--numel 262144] [--mode averager|allreduce]
#       [--prefix hr] [other rss_rounds flags, e.g. --codec blockwise8]
#
# The namespaces and the processes are removed on any exit.
set -euo pipefail

usage() { sed -n '2,13p' "$0" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
[[ $# -ge 1 ]] || usage
build_dir=$1; shift
bench="$build_dir/bench/rss_rounds"
dht="$build_dir/examples/hivemind_dht"
[[ -x "$bench" ]] || { echo "no $bench (build target rss_rounds)" >&2; exit 2; }

peers=4; rate=50mbit; rounds=1000; warmup=100; numel=262144; mode=averager; prefix=hr
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --peers) peers=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --numel) numel=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    -h|--help) usage ;;
    *) extra+=("$1"); shift ;;
  esac
done
[[ $mode != averager || -x "$dht" ]] || { echo "no $dht (build target hivemind_dht)" >&2; exit 2; }

work=$(mktemp -d /tmp/rss_rounds.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  "$here/wan.sh" down "$prefix" || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$here/wan.sh" down "$prefix"
"$here/wan.sh" up $((peers + 1)) "$rate" "$prefix"
mkdir "$work/rendezvous"

bootstrap=()
if [[ $mode == averager ]]; then
  ip netns exec "$prefix$peers" "$dht" --run_id=rss_rounds --report_every_s=0 \
    --listen="$(PREFIX=$prefix "$here/wan.sh" addr "$peers"):0" >"$work/dht.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -qs "initial peer:" "$work/dht.log" && break; sleep 0.1; done
  addr=$(sed -n 's/^initial peer: //p' "$work/dht.log")
  [[ -n "$addr" ]] || { cat "$work/dht.log"; exit 1; }
  bootstrap=(--initial_peers="$addr")
fi

echo "=== $peers peers, $rate each way, mode=$mode, $rounds rounds of $numel floats" \
     "(RSS after round $warmup against the end)"
start=$(date +%s)
rank_pids=()
for ((r = 0; r < peers; r++)); do
  ip netns exec "$prefix$r" "$bench" --rank="$r" --peers="$peers" --mode="$mode" \
    --rendezvous_dir="$work/rendezvous" --listen_host="$("$here/wan.sh" addr "$r")" \
    --rounds="$rounds" --warmup="$warmup" --numel="$numel" "${bootstrap[@]}" \
    "${extra[@]}" >"$work/out.$r" 2>"$work/err.$r" &
  pids+=($!)
  rank_pids+=($!)
done

status=0
for r in "${!rank_pids[@]}"; do
  rc=0
  wait "${rank_pids[$r]}" || rc=$?
  if ((rc != 0)); then
    echo "!!! rank $r exited with status $rc" >&2
    status=1
  fi
done
for ((r = 0; r < peers; r++)); do
  grep "^rss_rounds:" "$work/out.$r" || { echo "rank $r printed no summary:"; tail -n 20 "$work/out.$r"; }
  if [[ -s "$work/err.$r" ]]; then
    echo "--- rank $r stderr (last lines):" >&2
    tail -n 5 "$work/err.$r" >&2
  fi
done
echo "=== wall time $(( $(date +%s) - start )) s; status $status"
exit "$status"
