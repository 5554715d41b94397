"""Shutdown joins every thread the library started: after a full cycle (DHT nodes,
averagers, an optimizer, a round of averaging) the process is back to its thread
count, in Python's view and in the kernel's (/proc/self/task)."""
import os
import threading

import torch
import torch.nn.functional as F
from torch import nn

import hivemind_cpp as hm
from conftest import run_in_threads, wait_until


def thread_counts():
    return threading.active_count(), len(os.listdir("/proc/self/task"))


def one_cycle(tag):
    bootstrap = hm.DHT(run_id="threads")
    dhts = [hm.DHT([bootstrap.address], run_id="threads") for _ in range(2)]
    averagers = [hm.DecentralizedAverager(d, [8], prefix=f"threads.{tag}", target_group_size=2,
                                          matchmaking_time=3.0) for d in dhts]
    run_in_threads([lambda a=a: a.step(round="r", timeout=30) for a in averagers])
    model = nn.Linear(4, 2)
    opt = hm.Optimizer(dht=dhts[0], run_id=f"threads.{tag}", target_batch_size=8,
                       optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    F.mse_loss(model(torch.randn(4, 4)), torch.zeros(4, 2)).backward()
    opt.step(batch_size=4)
    opt.shutdown()
    for a in averagers:
        a.shutdown()
    for d in dhts + [bootstrap]:
        d.shutdown()


def test_no_thread_outlives_shutdown():
    one_cycle("warmup")  # process-wide pools (torch, OpenDHT) start once, lazily
    baseline = thread_counts()
    one_cycle("checked")
    assert wait_until(lambda: thread_counts() == baseline, timeout=10), (
        f"threads before: {baseline}, after: {thread_counts()}")


def test_context_managers_shut_down():
    baseline = thread_counts()
    with hm.DHT(run_id="threads") as dht:
        with hm.DecentralizedAverager(dht, [4], prefix="threads.ctx") as averager:
            assert averager.address.startswith("tcp://127.0.0.1:")
        assert dht.is_alive
    assert not dht.is_alive
    assert wait_until(lambda: thread_counts() == baseline, timeout=10)
