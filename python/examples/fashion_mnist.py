#!/usr/bin/python3
"""A Fashion-MNIST trainer peer in Python: the same model, flags and semantics as the
C++ examples/fashion_mnist/trainer.cc, so Python and C++ peers can share a swarm.

    PYTHONPATH=build/python /usr/bin/python3 python/examples/fashion_mnist.py \
        --initial_peers=127.0.0.1:4000 --peer_index=1 --num_peers=4

Every peer reads Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)
and trains on its own shard (the same shards as the C++ trainer for the same seed).
Stop it with Ctrl-C, --epochs or --leave_after.
"""
import argparse
import gzip
import math
import os
import signal
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import hivemind_cpp as hm

MEAN, STD = 0.2860, 0.3530  # the training set's pixel statistics (dataset.h)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--initial_peers", default="", help="DHT peers to join, HOST:PORT,...")
    p.add_argument("--listen_host", default="127.0.0.1",
                   help="address this peer listens on (DHT and averaging; free ports)")
    p.add_argument("--run_id", default="fashion_mnist", help="peers of one run train together")
    p.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--mode", default="node", choices=["node", "client", "aux"])
    p.add_argument("--codec", default="none", help="gradient codec spec")
    p.add_argument("--state_codec", default="none", help="parameter-averaging codec spec")
    p.add_argument("--grad_error_feedback", type=int, default=1)
    p.add_argument("--target_batch_size", type=int, default=1024)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--local_updates", type=int, default=0)
    p.add_argument("--diloco_outer_lr", type=float, default=0.0)
    p.add_argument("--average_state_every", type=int, default=5)
    p.add_argument("--target_group_size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=20, help="stop at this collaborative epoch")
    p.add_argument("--leave_after", type=float, default=0.0, help="seconds (0: never)")
    p.add_argument("--max_seconds", type=float, default=600.0)
    p.add_argument("--peer_index", type=int, default=0)
    p.add_argument("--num_peers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="0: peer_index + 1")
    p.add_argument("--progress_log", default="")
    p.add_argument("--name", default="")
    p.add_argument("--report_every", type=float, default=2.0)
    p.add_argument("--standalone", type=int, default=0,
                   help="train alone: one Adam step per target_batch_size samples")
    p.add_argument("--delay_updates", type=int, default=0)
    p.add_argument("--matchmaking_time", type=float, default=3.0)
    return p.parse_args()


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        assert (rows, cols) == (28, 28), f"{path}: {rows}x{cols} images"
        pixels = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, 784)
        return (pixels.astype(np.float32) / 255.0 - MEAN) / STD
    assert magic == 0x801, f"{path}: magic {magic:#x}"
    return np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)


def load(data_dir, split):
    prefix = os.path.join(data_dir, "train" if split == "train" else "t10k")
    images = read_idx(prefix + "-images-idx3-ubyte.gz")
    labels = read_idx(prefix + "-labels-idx1-ubyte.gz")
    assert len(images) == len(labels)
    return torch.from_numpy(images), torch.from_numpy(labels)


def mt19937_64(seed):
    """std::mt19937_64, so that shards match the C++ trainer's (dataset.cc)."""
    mask = (1 << 64) - 1
    mt = [seed & mask]
    for i in range(1, 312):
        mt.append((6364136223846793005 * (mt[-1] ^ (mt[-1] >> 62)) + i) & mask)
    index = 312
    while True:
        if index >= 312:
            for i in range(312):
                x = (mt[i] & 0xFFFFFFFF80000000) | (mt[(i + 1) % 312] & 0x7FFFFFFF)
                mt[i] = mt[(i + 156) % 312] ^ (x >> 1) ^ (0xB5026F5AA96619E9 if x & 1 else 0)
            index = 0
        y = mt[index]
        index += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        y ^= y >> 43
        yield y & mask


def shard_indices(size, peer, num_peers, seed):
    """dataset.cc's ShardIndices: a seeded Fisher-Yates shuffle, every num_peers-th."""
    order = list(range(size))
    rng = mt19937_64(seed)
    for i in range(size, 1, -1):
        j = next(rng) % i
        order[i - 1], order[j] = order[j], order[i - 1]
    return torch.tensor(order[peer::num_peers])


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


def test_accuracy(model, test):
    with torch.no_grad():
        return model(test[0]).argmax(1).eq(test[1]).double().mean().item()


def run_standalone(args, name, train, test):
    model = Mlp()
    adam = torch.optim.Adam(model.parameters(), lr=args.lr)
    batch, n, cursor, start = args.target_batch_size, len(train[1]), 0, time.time()
    for _ in range(args.epochs):
        if cursor + batch > n:
            cursor = 0
        adam.zero_grad()
        F.nll_loss(model(train[0][cursor:cursor + batch]), train[1][cursor:cursor + batch]).backward()
        adam.step()
        cursor += batch
    print(f"[{name}] final: epoch {args.epochs}, test accuracy {test_accuracy(model, test):.4f}, "
          f"bytes sent 0, utilization 1.000, {time.time() - start:.1f} s")


def print_progress(name, opt, loss):
    g = opt.progress
    eta = g.eta_next_epoch - time.time()
    eta_text = f"{max(eta, 0.0):.1f}s" if eta < 3600 else "?"
    print(f"[{name}] epoch {opt.local_epoch} | swarm {g.samples_per_second:6.0f} samples/s | "
          f"peers {g.num_peers} | loss {loss:.4f} | swarm samples "
          f"{g.samples_accumulated}/{g.target_batch_size} | ETA {eta_text}", flush=True)


def main():
    args = parse_args()
    index = args.peer_index
    name = args.name or f"peer{index}"
    seed = args.seed or index + 1
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    train, test = load(args.data_dir, "train"), load(args.data_dir, "test")
    if args.standalone:
        return run_standalone(args, name, train, test)
    shard = shard_indices(len(train[1]), index, args.num_peers, seed)
    images, labels = train[0][shard], train[1][shard]

    dht = hm.DHT([p for p in args.initial_peers.split(",") if p], run_id=args.run_id,
                 listen=f"{args.listen_host}:0")
    model = Mlp()
    auxiliary = args.mode == "aux"
    opt = hm.Optimizer(
        dht=dht, run_id=args.run_id, target_batch_size=args.target_batch_size,
        batch_size_per_step=args.batch_size,
        optimizer=torch.optim.Adam(model.parameters(), lr=args.lr),
        client_mode=args.mode == "client", auxiliary=auxiliary,
        listen=f"{args.listen_host}:0", grad_compression=args.codec,
        grad_error_feedback=bool(args.grad_error_feedback), state_compression=args.state_codec,
        use_local_updates=bool(args.local_updates), diloco_outer_lr=args.diloco_outer_lr,
        average_state_every=args.average_state_every, target_group_size=args.target_group_size,
        progress_log=args.progress_log, delay_updates=bool(args.delay_updates),
        matchmaking_time=args.matchmaking_time)
    print(f"[{name}] joined run '{args.run_id}' as {opt.peer_id[:8]} ({len(shard)} training "
          f"samples); DHT address {dht.address}", flush=True)

    start = next_report = time.time()
    loss_ema, cursor, batch, n = 0.0, 0, args.batch_size, len(labels)
    while not stop and opt.local_epoch < args.epochs:
        elapsed = time.time() - start
        if elapsed > args.max_seconds:
            break
        if args.leave_after > 0 and elapsed > args.leave_after:
            print(f"[{name}] leaving the swarm after {elapsed:.0f} s")
            break
        loss_value = math.nan
        if not auxiliary:
            if cursor + batch > n:
                cursor = 0
            x, y = images[cursor:cursor + batch], labels[cursor:cursor + batch]
            cursor += batch
            opt.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()
            loss_value = loss.item()
            loss_ema = loss_value if loss_ema == 0.0 else 0.95 * loss_ema + 0.05 * loss_value
        try:
            report = opt.step(batch_size=batch, loss=loss_value)
        except hm.HivemindError as e:
            print(f"[{name}] step: {e}", flush=True)
            continue
        if report.loaded_state:
            print(f"[{name}] caught up: loaded the swarm's state at epoch {report.epoch}")
        if report.epoch_advanced:
            local = "" if report.averaging_ok else " (local gradients)"
            print(f"[{name}] epoch {report.epoch} done: averaged with {report.group_size} "
                  f"peer(s){local}", flush=True)
        if time.time() >= next_report:
            print_progress(name, opt, loss_ema)
            next_report = time.time() + args.report_every
    if not auxiliary:
        stats, wall = opt.stats, time.time() - start
        utilization = 1.0 - stats.wait_time / wall if wall > 0 else 0.0
        print(f"[{name}] final: epoch {opt.local_epoch}, test accuracy "
              f"{test_accuracy(model, test):.4f}, bytes sent {stats.bytes_sent}, "
              f"utilization {utilization:.3f}, {wall:.1f} s", flush=True)
    opt.shutdown()
    dht.shutdown()


if __name__ == "__main__":
    main()
