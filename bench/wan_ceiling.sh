#!/usr/bin/env bash
# The ceiling the emulated WAN sets for an all-reduce. In a butterfly (or ring)
# all-reduce of M bytes over n hosts every host sends and receives B = 2*M*(n-1)/n
# bytes, and bench/wan_allreduce.sh reports the fraction of the link bound B/rate a
# round reaches. Two wan.sh hosts (tbf at RATE each way) here move exactly B bytes
# over one plain TCP stream each way at once (bench/wan_ceiling.py: no protocol, no
# encoding, no waiting on anyone): the fraction of the bound that reaches is the
# most any all-reduce can show on these links. --one_way sends in one direction
# only (no acknowledgements sharing the data's queues). Needs root and iproute2;
# the namespaces are always removed.
#
#   bench/wan_ceiling.sh [--hosts "4 8"] [--rate 100mbit] [--bytes 10000000]
#       [--repeats 3] [--one_way]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hosts="4 8"; rate=100mbit; bytes=10000000; repeats=3; one_way=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --hosts) hosts=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --bytes) bytes=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --one_way) one_way=(--one_way); shift ;;
    *) sed -n '2,13p' "$0" >&2; exit 2 ;;
  esac
done
case "$rate" in
  *gbit) mbit=$(( ${rate%gbit} * 1000 )) ;;
  *mbit) mbit=${rate%mbit} ;;
  *) echo "rate must end in mbit or gbit: $rate" >&2; exit 2 ;;
esac
prefix=hmceil
outs=()
cleanup() {
  "$here/wan.sh" down "$prefix" || true
  rm -f "${outs[@]}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$here/wan.sh" down "$prefix"
"$here/wan.sh" up 2 "$rate" "$prefix"
addrs="$("$here/wan.sh" addr 0),$("$here/wan.sh" addr 1)"
for n in $hosts; do
  per_host=$(( 2 * bytes * (n - 1) / n ))
  bound=$(awk "BEGIN { print $per_host * 8 / ($mbit * 1e6) }")
  for ((r = 0; r < repeats; r++)); do
    start=$(awk "BEGIN { printf \"%.3f\", $(date +%s.%N) + 1.5 }")
    pids=(); outs=()
    for i in 0 1; do
      outs+=("$(mktemp /tmp/wan_ceiling.XXXXXX)")
      PREFIX=$prefix "$here/wan.sh" exec "$i" /usr/bin/python3 "$here/wan_ceiling.py" \
        --rank "$i" --addrs "$addrs" --bytes "$per_host" --start_at "$start" \
        "${one_way[@]}" >"${outs[$i]}" &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    slowest=$(grep -ho 'seconds=[0-9.]*' "${outs[@]}" | cut -d= -f2 | sort -g | tail -n 1)
    rm -f "${outs[@]}"; outs=()
    awk "BEGIN { printf \"as_for_hosts=%d %s bytes_per_host=%d seconds=%.4f bound=%.4f fraction_of_bound=%.4f\n\", \
      $n, \"${one_way[*]:-duplex}\", $per_host, $slowest, $bound, $bound / $slowest }"
    sleep 0.5  # lets tbf's buckets refill, as between all-reduce repeats
  done
done
