#!/usr/bin/env bash
# hivemind's all-reduce against Gloo's on an emulated WAN: for each host count, N
# hosts in network namespaces behind links capped at RATE each way (bench/wan.sh, tbf),
# one rank per host, for each codec. Prints every rank-0 summary, then a table with
# the fraction of the link bound each library achieves. Needs root and iproute2.
#
#   bench/wan_allreduce.sh BUILD_DIR [--hosts "4 8"] [--rate 100mbit]
#       [--numel 2500000] [--codecs "none blockwise8 blockwise4+ef"]
#       [other allreduce_vs_gloo flags, e.g. --repeats 3]
#
# Link bound: 2*M*(n-1)/(n*B), M = the bytes of the payload each rank actually sends
# (from hivemind's report; numel*4 for Gloo), B = RATE. It counts payload bytes only:
# with a 1500-byte MTU the Ethernet, IP and TCP headers (66 of every 1514 bytes that
# tbf counts) cap goodput at ~95.6% of the bound. The namespaces are always removed.
set -euo pipefail

usage() { sed -n '2,14p' "$0" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
[[ $# -ge 1 ]] || usage
build_dir=$1; shift

hosts="4 8"
rate=100mbit
numel=2500000
codecs="none blockwise8 blockwise4+ef"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --hosts) hosts=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --numel) numel=$2; shift 2 ;;
    --codecs) codecs=$2; shift 2 ;;
    -h|--help) usage ;;
    *) extra+=("$1"); shift ;;
  esac
done

# tc units: kbit, mbit, gbit are powers of 1000.
case "$rate" in
  *gbit) mbit=$(( ${rate%gbit} * 1000 )) ;;
  *mbit) mbit=${rate%mbit} ;;
  *kbit) mbit=$(awk "BEGIN { print ${rate%kbit} / 1000 }") ;;
  *) echo "rate must end in kbit, mbit or gbit: $rate" >&2; exit 2 ;;
esac

prefix=hmbench
results=$(mktemp /tmp/wan_allreduce.XXXXXX)
cleanup() {
  "$here/wan.sh" down "$prefix" || true
  rm -f "$results"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

field() { grep -o "$1=[0-9.eE+-]*" <<<"$2" | tail -n 1 | cut -d= -f2; }
median() { grep "^$1" <<<"$2" | grep -o 'round median=[0-9.]*' | cut -d= -f2; }

status=0
for n in $hosts; do
  "$here/wan.sh" down "$prefix"
  "$here/wan.sh" up "$n" "$rate" "$prefix"
  for codec in $codecs; do
    echo "=== $n hosts, $rate each way, numel=$numel ($((numel * 4 / 1000000)) MB fp32), codec=$codec"
    set +e
    out=$("$here/run_allreduce.sh" "$build_dir" --peers "$n" --netns "$prefix" \
      --numel "$numel" --codec "$codec" --link_mbit "$mbit" "${extra[@]}")
    rc=$?
    set -e
    echo "$out"
    if ((rc != 0)); then
      echo "!!! exit status $rc" >&2
      status=$rc
    fi
    printf '%-6s %-16s %10s %10s %8s %8s %10s\n' "$n" "$codec" \
      "$(median hivemind "$out")" "$(median gloo "$out")" \
      "$(field hivemind_fraction_of_bound "$out")" "$(field gloo_fraction_of_bound "$out")" \
      "$(field speedup_vs_gloo "$out")" >>"$results"
  done
done

echo
echo "=== Summary ($rate each way, numel=$numel; fraction = link bound / median round)"
printf '%-6s %-16s %10s %10s %8s %8s %10s\n' hosts codec hivemind_s gloo_s hm_frac \
  gloo_frac speedup
cat "$results"
exit "$status"
