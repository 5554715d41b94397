#!/usr/bin/env bash
# Runs bench/allreduce_vs_gloo with N local ranks on 127.0.0.1 and prints rank 0's
# summary (its last line is ratio_vs_gloo=...).
#
#   bench/run_allreduce.sh BUILD_DIR [--peers N] [other allreduce_vs_gloo flags...]
#   bench/run_allreduce.sh build --peers 4 --numel 25000000 --codec none
#
# Every flag except --peers and --netns is passed to every rank unchanged. With
# --netns PREFIX, rank r runs inside network namespace PREFIX<r> and listens on that
# host's address (as set up by `bench/wan.sh up N RATE PREFIX`; see
# bench/wan_allreduce.sh). The first rank to fail stops the others; the script exits
# with that rank's status. The rendezvous directory is a fresh temporary one (the
# filesystem is shared across namespaces), removed on exit with every rank still
# running.
set -euo pipefail

usage() { sed -n '2,15p' "$0" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
[[ $# -ge 1 ]] || usage
build_dir=$1; shift
binary="$build_dir/bench/allreduce_vs_gloo"
[[ -x "$binary" ]] || { echo "no $binary (build target allreduce_vs_gloo)" >&2; exit 2; }

peers=4
netns=""
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --peers) peers=$2; shift 2 ;;
    --peers=*) peers=${1#--peers=}; shift ;;
    --netns) netns=$2; shift 2 ;;
    --netns=*) netns=${1#--netns=}; shift ;;
    -h|--help) usage ;;
    *) args+=("$1"); shift ;;
  esac
done

work=$(mktemp -d /tmp/allreduce_bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir "$work/rendezvous"
for ((r = 0; r < peers; r++)); do
  launch=()
  host_args=()
  if [[ -n "$netns" ]]; then
    launch=(ip netns exec "$netns$r")
    host_args=(--listen_host="$("$here/wan.sh" addr "$r")")
  fi
  "${launch[@]}" "$binary" --rank="$r" --peers="$peers" \
    --rendezvous_dir="$work/rendezvous" "${host_args[@]}" "${args[@]}" \
    >"$work/out.$r" 2>"$work/err.$r" &
  pids+=($!)
done

# Wait for every rank; the first failure stops the rest.
status=0
declare -A rank_of
for r in "${!pids[@]}"; do rank_of[${pids[$r]}]=$r; done
while ((${#rank_of[@]} > 0)); do
  set +e
  wait -n -p done_pid "${!rank_of[@]}"
  rc=$?
  set -e
  r=${rank_of[$done_pid]}
  unset "rank_of[$done_pid]"
  if ((rc != 0)); then
    echo "rank $r exited with status $rc; stopping the others" >&2
    status=$rc
    break
  fi
done

cat "$work/out.0"
for ((r = 0; r < peers; r++)); do
  if [[ -s "$work/err.$r" ]]; then
    echo "--- rank $r stderr:" >&2
    tail -n 20 "$work/err.$r" >&2
  fi
done
exit "$status"
