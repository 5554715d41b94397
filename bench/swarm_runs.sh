# Shared by the Fashion-MNIST swarm benchmarks (bench/convergence.sh,
# bench/poisoning.sh); sourced, not run. After `swarm_setup NAME BUILD_DIR`:
# $trainer, $dht, $work (a temporary directory removed on exit with every process in
# $pids killed); `start_bootstrap RUN_ID` starts a DHT bootstrap node and sets
# $bootstrap; `field NAME` averages "NAME <number>" over its input; `gap_pp A B` is
# (A - B) in percentage points.

swarm_setup() {
  trainer=$2/examples/fashion_mnist_trainer
  dht=$2/examples/hivemind_dht
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  pids=()
  trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
}

start_bootstrap() {
  "$dht" --run_id="$1" --report_every_s=0 > "$work/dht.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q "initial peer:" "$work/dht.log" && break; sleep 0.1; done
  bootstrap=$(sed -n 's/^initial peer: //p' "$work/dht.log")
}

field() { grep -o "$1 [0-9.]*" | awk '{ s += $NF; n++ } END { if (n) printf "%.4f", s / n }'; }

gap_pp() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.2f", (a - b) * 100 }'; }
