#!/usr/bin/env bash
# State download over an emulated WAN: 4 hosts in network namespaces (bench/wan.sh,
# tbf). Host 0 is the loader (and the DHT's bootstrap node); hosts 1..3 are donors
# that all serve the same state. In one run the loader downloads it from 1, 2 and 3
# donors (bench/state_download, interleaved repeats) and prints the median times and
# the speedups over one donor. Needs root and iproute2.
#
#   bench/wan_state_download.sh BUILD_DIR [--rate 50mbit] [--loader_rate 200mbit]
#       [other state_download flags, e.g. --state_mib=64 --repeats=3]
#
# Donors' links are capped at RATE each way; the loader's at LOADER_RATE (default 4x):
# a volunteer's uplink is usually much slower than the downlink of a newcomer in a
# data centre, and that gap is what downloading from several donors at once closes.
# With RATE per donor, n donors can at best be min(n x RATE, LOADER_RATE) / RATE times
# faster than one. The namespaces and the donor processes are always removed.
set -euo pipefail

usage() { sed -n '2,15p' "$0" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
[[ $# -ge 1 ]] || usage
build_dir=$1; shift

rate=50mbit
loader_rate=""
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --loader_rate) loader_rate=$2; shift 2 ;;
    -h|--help) usage ;;
    *) extra+=("$1"); shift ;;
  esac
done
if [[ -z "$loader_rate" ]]; then
  [[ "$rate" =~ ^([0-9]+)(kbit|mbit|gbit)$ ]] || { echo "bad rate: $rate" >&2; exit 2; }
  loader_rate="$(( BASH_REMATCH[1] * 4 ))${BASH_REMATCH[2]}"
fi

program="$build_dir/bench/state_download"
[[ -x "$program" ]] || { echo "not built: $program" >&2; exit 2; }
export PREFIX=hmstate
work=$(mktemp -d /tmp/wan_state_download.XXXXXX)
donors=()
cleanup() {
  for pid in "${donors[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$here/wan.sh" down "$PREFIX" || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$here/wan.sh" down "$PREFIX"
"$here/wan.sh" up 4 "$rate" "$PREFIX"
"$here/wan.sh" rate 0 "$loader_rate"
echo "=== loader (host 0) at $loader_rate each way; 3 donors at $rate each way"

"$here/wan.sh" exec 0 "$program" --role=loader --listen_host="$("$here/wan.sh" addr 0)" \
  --rendezvous_dir="$work" --expect_donors=3 "${extra[@]}" &
loader=$!
for _ in $(seq 100); do [[ -f "$work/dht_address" ]] && break; sleep 0.1; done
[[ -f "$work/dht_address" ]] || { echo "the loader did not start" >&2; exit 1; }
for i in 1 2 3; do
  "$here/wan.sh" exec "$i" "$program" --role=donor \
    --listen_host="$("$here/wan.sh" addr "$i")" --dht_peer="$(cat "$work/dht_address")" \
    "${extra[@]}" >"$work/donor$i.log" 2>&1 &
  donors+=($!)
done
status=0
wait "$loader" || status=$?
((status == 0)) || { echo "!!! loader exit status $status" >&2; cat "$work"/donor*.log >&2; }
exit "$status"
