#!/usr/bin/env bash
# (A copy of the project's shared tool, so that CI, which has only this repository,
# can run bench/wan_allreduce.sh.)
# Emulated wide-area network for tests and benchmarks: N peer hosts, each in its own
# network namespace, joined by one bridge, each with a capped uplink and downlink.
# Needs root and iproute2 (`apt-get install -y iproute2`). The kernel here has tbf
# (rate limits) but not netem (no added delay).
#
#   wan.sh up N RATE [PREFIX]  create hosts PREFIX0..PREFIX{N-1} (default prefix hm),
#                              each limited to RATE each way (tbf syntax: 100mbit, 1gbit)
#   wan.sh addr I [PREFIX]     print host I's address
#   wan.sh exec I CMD... [--]  run CMD inside host I (env PREFIX selects the set)
#   wan.sh cut I | heal I      take host I's link down / up (partition tests)
#   wan.sh rate I RATE         set host I's caps (both ways) to RATE, replacing the
#                              ones `up` gave it (env PREFIX selects the set)
#   wan.sh down [PREFIX]       remove every host of the set
#
# Addresses are 10.213.X.(I+1)/16 where X is 0 for prefix hm, so all traffic stays on
# veth pairs inside this machine.
set -euo pipefail
cmd=${1:-}; shift || true
prefix_default=${PREFIX:-hm}

addr_of() { echo "10.213.$(( $1 / 250 )).$(( $1 % 250 + 1 ))"; }

case "$cmd" in
  up)
    n=$1; rate=$2; p=${3:-$prefix_default}; sw="${p}sw"
    ip netns add "$sw"
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" link set br0 up
    ip -n "$sw" link set lo up
    for ((i = 0; i < n; i++)); do
      ns="${p}${i}"
      ip netns add "$ns"
      ip link add "${p}h${i}" type veth peer name "${p}s${i}"
      ip link set "${p}h${i}" netns "$ns"
      ip link set "${p}s${i}" netns "$sw"
      ip -n "$ns" link set "${p}h${i}" name eth0
      ip -n "$ns" addr add "$(addr_of "$i")/16" dev eth0
      ip -n "$ns" link set eth0 up
      ip -n "$ns" link set lo up
      ip -n "$sw" link set "${p}s${i}" master br0
      ip -n "$sw" link set "${p}s${i}" up
      # uplink cap (host -> switch) and downlink cap (switch -> host)
      ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst 256kb latency 100ms
      ip netns exec "$sw" tc qdisc add dev "${p}s${i}" root tbf rate "$rate" burst 256kb latency 100ms
    done
    ;;
  addr) addr_of "$1" ;;
  exec) i=$1; shift; exec ip netns exec "${prefix_default}${i}" "$@" ;;
  cut)  ip -n "${prefix_default}sw" link set "${prefix_default}s$1" down ;;
  heal) ip -n "${prefix_default}sw" link set "${prefix_default}s$1" up ;;
  down)
    p=${1:-$prefix_default}
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^${p}([0-9]+|sw)$" || true); do
      ip netns del "$ns"
    done
    ;;
  rate)
    i=$1; rate=$2; p=$prefix_default
    ip netns exec "${p}${i}" tc qdisc replace dev eth0 root tbf rate "$rate" burst 256kb latency 100ms
    ip netns exec "${p}sw" tc qdisc replace dev "${p}s${i}" root tbf rate "$rate" burst 256kb latency 100ms
    ;;
  *) sed -n '2,21p' "$0"; exit 2 ;;
esac
