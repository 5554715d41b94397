#!/usr/bin/python3
"""Chaos test: a swarm of Fashion-MNIST trainers on an emulated WAN under faults.

Sets up PEERS + 1 hosts with bench/wan.sh (network namespaces, links capped at RATE
each way), a bootstrap DHT node on the last host and one fashion_mnist_trainer per
other host. For DURATION seconds a supervisor injects random faults, at most
--max_disturbed peers at a time:
  - kill: SIGKILL a random peer, restart it 2-6 s later (it must load the swarm's
    state from the others and catch up);
  - cut: take a random host's link down (wan.sh cut), heal it 3-8 s later.
Then it heals and restarts everything, lets the swarm train --quiet_epochs more
epochs, stops every peer at one epoch (the trainer's --stop_epoch_file) and checks:
  1. every process exit was our SIGKILL or a clean exit (status 0), and no log
     holds a crash, an abort or a sanitizer report;
  2. no optimizer Step blocked past its deadline (the trainer's --step_log): an
     epoch's averaging rounds (averaging_timeout each: gradients, then parameters on
     a parameter-averaging epoch), a state download (load_state_timeout), plus
     --slack seconds;
  3. every peer ends at the swarm's final epoch (its checkpoint and "final:" line);
  4. the final parameters (checkpoints) are within the state codec's bound of each
     other (0 for --state_codec=none: the butterfly all-reduce leaves every member of
     a group bit-identical);
  5. the loss keeps decreasing: the mean loss over the last third of the epochs is
     below that of the first third and not above that of the middle third (+0.05).

  chaos_test.py --trainer BUILD/examples/fashion_mnist_trainer \\
                --dht BUILD/examples/hivemind_dht [--long] [--duration 90] [--seed N]

--long (or HIVEMIND_CHAOS_LONG=1) runs 360 s of chaos. Needs root and iproute2 (exits
77, ctest's skip code, without them). The namespaces and every process started are
removed on any exit. Logs stay in --out (default: a fresh temporary directory).
"""

import argparse
import ctypes
import glob
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WAN = os.path.join(HERE, "..", "..", "bench", "wan.sh")
SKIP = 77
LOAD_STATE_TIMEOUT = 120.0  # OptimizerOptions::load_state_timeout's default
CRASH_PATTERNS = re.compile(
    r"AddressSanitizer|LeakSanitizer|ThreadSanitizer|UndefinedBehaviorSanitizer|"
    r"runtime error:|terminate called|Segmentation fault|Aborted|core dumped|"
    r"Assertion .* failed|Check failed")


def log(msg):
    print("[chaos %7.1f] %s" % (time.monotonic() - START, msg), flush=True)


START = time.monotonic()


def die_with_parent():
    # The trainers die with the supervisor, even if it is SIGKILLed (a ctest timeout).
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Wan:
    def __init__(self, prefix):
        self.prefix = prefix
        self.env = dict(os.environ, PREFIX=prefix)

    def run(self, *args):
        subprocess.run([WAN, *args], env=self.env, check=True)

    def addr(self, i):
        return subprocess.run([WAN, "addr", str(i)], env=self.env, check=True,
                              capture_output=True, text=True).stdout.strip()

    def up(self, n, rate):
        self.down()
        self.run("up", str(n), rate, self.prefix)

    def down(self):
        subprocess.run([WAN, "down", self.prefix], env=self.env)

    def cut(self, i):
        self.run("cut", str(i))

    def heal(self, i):
        self.run("heal", str(i))


class Peer:
    """One trainer slot: host i, restarted as incarnation 0, 1, ..."""

    def __init__(self, index):
        self.index = index
        self.proc = None
        self.incarnation = -1
        self.killed_pids = set()  # pids we SIGKILLed
        self.exits = []  # (pid, returncode, by_us)
        self.cut = False
        self.restart_at = None
        self.heal_at = None

    def disturbed(self):
        return self.proc is None or self.cut


class Chaos:
    def __init__(self, args):
        self.a = args
        self.out = args.out
        self.wan = Wan(args.prefix)
        self.rng = random.Random(args.seed)
        self.peers = [Peer(i) for i in range(args.peers)]
        self.dht = None
        self.bootstrap = None
        self.stop_file = os.path.join(self.out, "stop_epoch")
        self.events = {"kill": 0, "restart": 0, "cut": 0, "heal": 0}
        self.failures = []
        self.chaos_end_epoch = None

    # -- processes -------------------------------------------------------------------
    def spawn(self, host, argv, log_path):
        out = open(log_path, "ab")
        return subprocess.Popen(["ip", "netns", "exec", "%s%d" % (self.a.prefix, host),
                                 *argv], stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)

    def start_dht(self):
        host = self.a.peers
        path = os.path.join(self.out, "dht.log")
        self.dht = self.spawn(host, [self.a.dht, "--run_id=chaos", "--report_every_s=0",
                                     "--listen=%s:0" % self.wan.addr(host)], path)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = re.search(r"initial peer: (\S+)", open(path).read())
            if m:
                self.bootstrap = m.group(1)
                return
            time.sleep(0.1)
        raise RuntimeError("the bootstrap node printed no address:\n" + open(path).read())

    def start_peer(self, peer):
        peer.incarnation += 1
        i, k = peer.index, peer.incarnation
        stem = os.path.join(self.out, "peer%d.%d" % (i, k))
        argv = [self.a.trainer, "--run_id=chaos", "--initial_peers=" + self.bootstrap,
                "--listen_host=" + self.wan.addr(i), "--peer_index=%d" % i,
                "--num_peers=%d" % self.a.peers, "--name=peer%d.%d" % (i, k),
                "--epochs=1000000", "--max_seconds=100000", "--report_every=5",
                "--codec=" + self.a.codec, "--state_codec=" + self.a.state_codec,
                "--target_batch_size=%d" % self.a.target_batch_size,
                "--target_group_size=%d" % self.a.peers,
                "--average_state_every=%d" % self.a.average_state_every,
                "--matchmaking_time=%g" % self.a.matchmaking_time,
                "--averaging_timeout=%g" % self.a.averaging_timeout,
                # A straggler's two failed rounds end 2 matchmaking times after the
                # others' rounds; then it downloads their final state.
                "--finish_window_s=%g" % (3 * self.a.matchmaking_time + 5),
                "--progress_log=%s.progress.jsonl" % stem, "--step_log=%s.steps.jsonl" % stem,
                "--stop_epoch_file=" + self.stop_file,
                "--checkpoint_out=%s.ckpt" % os.path.join(self.out, "peer%d" % i)]
        peer.proc = self.spawn(i, argv, stem + ".log")
        peer.restart_at = None

    def kill_peer(self, peer):
        peer.killed_pids.add(peer.proc.pid)
        peer.proc.send_signal(signal.SIGKILL)
        self.reap(peer, peer.proc.wait())

    def reap(self, peer, rc):
        pid = peer.proc.pid
        by_us = pid in peer.killed_pids and rc == -signal.SIGKILL
        peer.exits.append((pid, rc, by_us))
        peer.proc = None
        if not by_us and rc != 0:
            self.failures.append("peer%d.%d (pid %d) exited with status %d" %
                                 (peer.index, peer.incarnation, pid, rc))

    def poll(self):
        """Reaps peers that exited on their own (a crash during chaos)."""
        for p in self.peers:
            if p.proc is not None and p.proc.poll() is not None:
                rc = p.proc.returncode
                log("peer%d.%d exited on its own with status %d" % (p.index, p.incarnation, rc))
                if rc == 0:
                    self.failures.append("peer%d.%d stopped before the end" %
                                         (p.index, p.incarnation))
                self.reap(p, rc)
                p.restart_at = None  # not ours to restart: the failure is recorded

    # -- progress ----------------------------------------------------------------------
    def read_jsonl(self, pattern):
        rows = []
        for path in sorted(glob.glob(os.path.join(self.out, pattern))):
            with open(path) as f:
                for line in f:
                    line = line.strip()
                    if line.endswith("}"):
                        rows.append(json.loads(line))
        return rows

    def swarm_epoch(self):
        return max((r["epoch"] for r in self.read_jsonl("peer*.progress.jsonl")), default=0)

    # -- phases ------------------------------------------------------------------------
    def warm_up(self):
        deadline = time.monotonic() + self.a.warmup_timeout
        while self.swarm_epoch() < 2:
            self.poll()
            if time.monotonic() > deadline:
                raise RuntimeError("the swarm did not reach epoch 2 in %d s" %
                                   self.a.warmup_timeout)
            time.sleep(0.5)
        log("warm: swarm at epoch %d" % self.swarm_epoch())

    def chaos(self):
        end = time.monotonic() + self.a.duration
        next_event = time.monotonic() + self.rng.uniform(*self.a.interval)
        while time.monotonic() < end:
            now = time.monotonic()
            self.poll()
            for p in self.peers:
                if p.restart_at is not None and now >= p.restart_at:
                    self.start_peer(p)
                    self.events["restart"] += 1
                    log("restarted peer%d as incarnation %d" % (p.index, p.incarnation))
                if p.heal_at is not None and now >= p.heal_at:
                    self.wan.heal(p.index)
                    p.cut, p.heal_at = False, None
                    self.events["heal"] += 1
                    log("healed host %d" % p.index)
            if now >= next_event:
                next_event = now + self.rng.uniform(*self.a.interval)
                self.inject()
            time.sleep(0.1)

    def inject(self):
        disturbed = sum(p.disturbed() for p in self.peers)
        healthy = [p for p in self.peers if not p.disturbed()]
        if disturbed >= self.a.max_disturbed or not healthy:
            return
        p = self.rng.choice(healthy)
        if self.rng.random() < 0.5:
            self.kill_peer(p)
            p.restart_at = time.monotonic() + self.rng.uniform(2, 6)
            self.events["kill"] += 1
            log("SIGKILLed peer%d (swarm epoch %d)" % (p.index, self.swarm_epoch()))
        else:
            self.wan.cut(p.index)
            p.cut, p.heal_at = True, time.monotonic() + self.rng.uniform(3, 8)
            self.events["cut"] += 1
            log("cut host %d (swarm epoch %d)" % (p.index, self.swarm_epoch()))

    def settle_and_stop(self):
        for p in self.peers:
            if p.cut:
                self.wan.heal(p.index)
                p.cut, p.heal_at = False, None
                self.events["heal"] += 1
            if p.proc is None and p.restart_at is not None:
                self.start_peer(p)
                self.events["restart"] += 1
        epoch = self.chaos_end_epoch = self.swarm_epoch()
        every = max(self.a.average_state_every, 1)
        stop = -(-(epoch + self.a.quiet_epochs) // every) * every
        with open(self.stop_file + ".tmp", "w") as f:
            f.write("%d\n" % stop)
        os.rename(self.stop_file + ".tmp", self.stop_file)
        log("chaos over at swarm epoch %d; every peer stops at epoch %d" % (epoch, stop))
        deadline = time.monotonic() + self.a.stop_timeout
        for p in self.peers:
            if p.proc is None:
                continue
            try:
                rc = p.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.failures.append("peer%d.%d did not reach epoch %d within %d s" %
                                     (p.index, p.incarnation, stop, self.a.stop_timeout))
                p.killed_pids.add(p.proc.pid)  # stopped by us, not a crash
                p.proc.send_signal(signal.SIGKILL)
                rc = p.proc.wait()
            self.reap(p, rc)
        return stop

    # -- checks ------------------------------------------------------------------------
    def check_logs(self):
        for path in sorted(glob.glob(os.path.join(self.out, "*.log"))):
            with open(path, errors="replace") as f:
                for line in f:
                    if CRASH_PATTERNS.search(line):
                        self.failures.append("%s: %s" % (os.path.basename(path),
                                                         line.strip()))
                        break

    def check_deadlines(self):
        a = self.a
        worst = {}
        for row in self.read_jsonl("peer*.steps.jsonl"):
            rounds = 1
            if a.average_state_every > 0 and row["epoch"] % a.average_state_every == 0:
                rounds = 2  # gradients, then parameters
            if row["advanced"]:
                kind, limit = "epoch", rounds * a.averaging_timeout
            elif row["loaded"]:
                kind, limit = "state_load", LOAD_STATE_TIMEOUT
            else:  # a state download that failed, or a step that should not block
                kind, limit = "other", max(LOAD_STATE_TIMEOUT, 2 * a.averaging_timeout)
            if row["seconds"] > limit + a.slack:
                self.failures.append("%s blocked %.1f s in a step (%s, epoch %d); its "
                                     "deadline is %.0f s + %.0f s slack" %
                                     (row["peer"], row["seconds"], kind, row["epoch"],
                                      limit, a.slack))
            worst[kind] = max(worst.get(kind, 0.0), row["seconds"])
        return worst

    def check_final(self, stop):
        params = {}
        for p in self.peers:
            path = os.path.join(self.out, "peer%d.ckpt" % p.index)
            if not os.path.exists(path):
                self.failures.append("peer%d left no checkpoint" % p.index)
                continue
            epoch, values = parse_checkpoint(path)
            if epoch != stop:
                self.failures.append("peer%d ended at epoch %d, the swarm at %d" %
                                     (p.index, epoch, stop))
            params[p.index] = values
            final = re.findall(r"final: epoch (\d+)",
                               open(os.path.join(self.out, "peer%d.%d.log" %
                                                 (p.index, p.incarnation))).read())
            if not final or int(final[-1]) != stop:
                self.failures.append("peer%d.%d printed no 'final: epoch %d'" %
                                     (p.index, p.incarnation, stop))
        spread, bound = 0.0, 0.0
        if len(params) >= 2:
            ref = params[min(params)]
            bound = codec_bound(self.a.state_codec, ref)
            for v in params.values():
                spread = max(spread, max(abs(x - y) for x, y in zip(v, ref)))
            if spread > bound:
                self.failures.append("final parameters differ by %.3g (bound %.3g)" %
                                     (spread, bound))
        return spread, bound

    def check_loss(self):
        by_epoch = {}
        for r in self.read_jsonl("peer*.progress.jsonl"):
            if r.get("loss") is not None:
                by_epoch.setdefault(r["epoch"], []).append(r["loss"])
        epochs = sorted(by_epoch)
        if len(epochs) < 6:
            self.failures.append("only %d epochs with a loss" % len(epochs))
            return None
        means = [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs]
        third = len(means) // 3
        m = [sum(x) / len(x) for x in (means[:third], means[third:-third], means[-third:])]
        if not (m[2] < m[0] and m[2] <= m[1] + 0.05):
            self.failures.append("the loss did not keep decreasing: thirds %.4f %.4f %.4f" %
                                 tuple(m))
        return m

    def round_stats(self):
        rows = self.read_jsonl("peer*.progress.jsonl")
        full = sum(1 for r in rows if r["averaged"] and r["group_size"] == self.a.peers)
        failed = sum(1 for r in rows if not r["averaged"])
        # The swarm recovered at the first epoch from which every round was whole.
        partial = [r["epoch"] for r in rows
                   if not (r["averaged"] and r["group_size"] == self.a.peers)]
        return len(rows), full, failed, max(partial, default=0) + 1

    # -- the run -----------------------------------------------------------------------
    def run(self):
        self.wan.up(self.a.peers + 1, self.a.rate)
        self.start_dht()
        log("%d hosts at %s, bootstrap node %s, logs in %s" %
            (self.a.peers + 1, self.a.rate, self.bootstrap, self.out))
        for p in self.peers:
            self.start_peer(p)
        self.warm_up()
        chaos_start = time.monotonic()
        self.chaos()
        chaos_s = time.monotonic() - chaos_start
        stop = self.settle_and_stop()
        self.check_logs()
        worst = self.check_deadlines()
        spread, bound = self.check_final(stop)
        thirds = self.check_loss()
        rows, full, failed, recovered = self.round_stats()
        summary = {
            "peers": self.a.peers, "rate": self.a.rate, "chaos_s": round(chaos_s, 1),
            "total_s": round(time.monotonic() - START, 1), "events": self.events,
            "chaos_end_epoch": self.chaos_end_epoch, "whole_groups_from_epoch": recovered,
            "final_epoch": stop, "param_spread": spread, "param_bound": bound,
            "loss_thirds": [round(x, 4) for x in thirds] if thirds else None,
            "worst_step_s": {k: round(v, 2) for k, v in worst.items()},
            "epoch_records": rows, "full_group_rounds": full, "failed_rounds": failed,
            "exits": {"peer%d" % p.index: [rc for _, rc, _ in p.exits] for p in self.peers},
        }
        print("chaos summary: " + json.dumps(summary), flush=True)
        return summary

    def cleanup(self):
        for p in self.peers:
            if p.proc is not None and p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()
        if self.dht is not None and self.dht.poll() is None:
            self.dht.terminate()
            try:
                self.dht.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.dht.kill()
                self.dht.wait()
            if self.dht.returncode not in (0, -signal.SIGTERM):
                self.failures.append("the bootstrap node exited with status %d" %
                                     self.dht.returncode)
        self.wan.down()


def parse_checkpoint(path):
    """The epoch and values of a state blob (docs/wire_format.md, version 1)."""
    with open(path, "rb") as f:
        blob = f.read()
    version, epoch = struct.unpack_from("<BQ", blob, 0)
    if version != 1:
        raise ValueError("%s: state blob version %d" % (path, version))
    (meta_len,) = struct.unpack_from("<I", blob, 9)
    off = 13 + meta_len
    (count,) = struct.unpack_from("<Q", blob, off)
    values = struct.unpack_from("<%df" % count, blob, off + 8)
    return epoch, values


def codec_bound(spec, values):
    """How far two members of one round may end apart (docs/codecs.md): each within
    the codec's bound of the average, so twice the bound."""
    if spec == "none":
        return 0.0
    if spec == "fp16":
        return 2 * max(abs(x) for x in values) * 2.0 ** -11 + 1e-7
    m = re.fullmatch(r"blockwise(8|4|2)", spec)
    if m:
        levels = {"8": 254, "4": 14, "2": 3}[m.group(1)]
        return 2 * 2 * max(abs(x) for x in values) / levels
    raise ValueError("no bound known for --state_codec=%s" % spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trainer", required=True)
    ap.add_argument("--dht", required=True)
    ap.add_argument("--peers", type=int, default=8)
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds of chaos (default 90, 360 with --long)")
    ap.add_argument("--long", action="store_true",
                    default=os.environ.get("HIVEMIND_CHAOS_LONG", "") not in ("", "0"))
    ap.add_argument("--interval", type=float, nargs=2, default=(4.0, 9.0),
                    help="seconds between fault injections (uniform)")
    ap.add_argument("--max_disturbed", type=int, default=2,
                    help="peers killed or cut off at the same time, at most")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--prefix", default="hc", help="network namespace prefix")
    ap.add_argument("--out", default=None)
    ap.add_argument("--codec", default="blockwise8")
    ap.add_argument("--state_codec", default="none")
    ap.add_argument("--target_batch_size", type=int, default=2048)
    ap.add_argument("--average_state_every", type=int, default=2)
    ap.add_argument("--matchmaking_time", type=float, default=5.0)
    ap.add_argument("--averaging_timeout", type=float, default=20.0)
    ap.add_argument("--quiet_epochs", type=int, default=14,
                    help="epochs after the chaos before every peer stops (the swarm "
                    "took 2 to 4 to re-form whole groups in our runs, 10 and more "
                    "before the DHT refreshed its view periodically)")
    ap.add_argument("--slack", type=float, default=10.0)
    ap.add_argument("--warmup_timeout", type=int, default=90)
    ap.add_argument("--stop_timeout", type=int, default=120)
    args = ap.parse_args()
    if args.duration is None:
        args.duration = 360.0 if args.long else 90.0
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
        print("chaos_test: SKIPPED: needs root and iproute2 (network namespaces)")
        return SKIP
    keep = args.out is not None
    args.out = args.out or tempfile.mkdtemp(prefix="hivemind_chaos.")
    os.makedirs(args.out, exist_ok=True)
    log("seed %d, %d peers, %.0f s of chaos" % (args.seed, args.peers, args.duration))

    chaos = Chaos(args)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        chaos.run()
    except Exception as e:  # a setup or harness error fails the test too
        chaos.failures.append("harness: %s: %s" % (type(e).__name__, e))
    finally:
        chaos.cleanup()
    if chaos.failures:
        print("chaos_test: FAILED (seed %d, logs in %s):" % (args.seed, args.out))
        for f in chaos.failures:
            print("  - " + f)
        for path in sorted(glob.glob(os.path.join(args.out, "peer*.log")))[:64]:
            print("--- tail of %s" % os.path.basename(path))
            with open(path, errors="replace") as f:
                print("".join(f.readlines()[-8:]), end="")
        return 1
    print("chaos_test: PASSED (seed %d)" % args.seed)
    if not keep:
        shutil.rmtree(args.out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
