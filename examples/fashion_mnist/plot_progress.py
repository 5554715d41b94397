#!/usr/bin/python3
"""Plots loss against time per peer from DecentralizedOptimizer progress logs.

Each input file holds JSON lines (one per epoch) written by the optimizer's
`progress_log` option: {"time", "peer", "epoch", "loss", ...}.

    plot_progress.py demo-output/peer*.jsonl --output loss.png
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("logs", nargs="+")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    runs = {os.path.splitext(os.path.basename(p))[0]: read(p) for p in args.logs}
    start = min((r[0]["time"] for r in runs.values() if r), default=0.0)
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, rows in sorted(runs.items()):
        points = [(r["time"] - start, r["loss"]) for r in rows if r.get("loss") is not None]
        if points:
            ax.plot(*zip(*points), marker=".", label=name)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("training loss (mean over the epoch)")
    ax.set_title("Fashion-MNIST swarm: loss per peer")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
