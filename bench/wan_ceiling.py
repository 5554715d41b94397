#!/usr/bin/env python3
"""What the emulated WAN itself lets a host move: one TCP stream each way, nothing else.

Two processes, each inside one wan.sh host's network namespace. At an agreed wall
clock time (the namespaces share this machine's clock) each sends --bytes to the
other over one TCP connection while receiving as many (--one_way: only rank 0
sends). Each prints `rank=I seconds=T`, T = from the start to having sent and
received everything it should. An all-reduce in which every host sends and
receives B bytes cannot beat the slower of the two: bench/wan_ceiling.sh compares
that time with the link bound B/rate that bench/wan_allreduce.sh uses.
"""

import argparse
import socket
import sys
import threading
import time

CHUNK = 1 << 20
PORT = 29650


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rank", type=int, choices=(0, 1), required=True)
    p.add_argument("--addrs", required=True, help="the two hosts' addresses, comma-separated")
    p.add_argument("--bytes", type=int, required=True, help="bytes each host sends")
    p.add_argument("--one_way", action="store_true", help="only rank 0 sends")
    p.add_argument("--start_at", type=float, required=True, help="time.time() to start")
    return p.parse_args()


def connect(addr, deadline):
    while True:
        try:
            return socket.create_connection((addr, PORT), timeout=5)
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def send_all(sock, count):
    payload = memoryview(bytes(CHUNK))
    while count > 0:
        step = min(count, CHUNK)
        sock.sendall(payload[:step])
        count -= step


def receive_all(sock, count):
    scratch = bytearray(CHUNK)
    view = memoryview(scratch)
    while count > 0:
        got = sock.recv_into(view[: min(count, CHUNK)])
        if got == 0:
            raise ConnectionError("peer closed with %d bytes owed" % count)
        count -= got


def main():
    args = parse_args()
    addrs = args.addrs.split(",")
    me, other = addrs[args.rank], addrs[1 - args.rank]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((me, PORT))
    listener.listen(1)
    listener.settimeout(max(1.0, args.start_at - time.time() + 5))
    # Rank 0 connects first, so neither waits on the other's accept.
    if args.rank == 0:
        outgoing = connect(other, args.start_at)
        incoming, _ = listener.accept()
    else:
        incoming, _ = listener.accept()
        outgoing = connect(other, args.start_at)
    for s in (incoming, outgoing):
        s.settimeout(None)

    sends = args.bytes if (args.rank == 0 or not args.one_way) else 0
    receives = args.bytes if (args.rank == 1 or not args.one_way) else 0
    delay = args.start_at - time.time()
    if delay < 0:
        sys.exit("rank %d: set up after the start time; give more lead" % args.rank)
    time.sleep(delay)
    sender = threading.Thread(target=send_all, args=(outgoing, sends))
    sender.start()
    receive_all(incoming, receives)
    sender.join()
    print("rank=%d seconds=%.4f" % (args.rank, time.time() - args.start_at), flush=True)
    for s in (incoming, outgoing, listener):
        s.close()


if __name__ == "__main__":
    main()
