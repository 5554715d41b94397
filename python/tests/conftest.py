"""Shared fixtures: a bootstrap DHT node on 127.0.0.1 and helpers for peers in threads.

Run with PYTHONPATH=<build>/python (scripts/test.sh does):
    PYTHONPATH=build/python /usr/bin/python3 -m pytest python/tests
"""
import threading
import time

import pytest
import torch

import hivemind_cpp as hm

torch.set_num_threads(1)

RUN_ID = "pytest"


@pytest.fixture
def bootstrap():
    dht = hm.DHT(run_id=RUN_ID)
    yield dht
    dht.shutdown()


@pytest.fixture
def make_dht(bootstrap):
    """A factory of DHT nodes joined to the bootstrap node, all shut down after."""
    made = []

    def make():
        dht = hm.DHT([bootstrap.address], run_id=RUN_ID)
        made.append(dht)
        return dht

    yield make
    for dht in made:
        dht.shutdown()


def run_in_threads(functions, timeout=120.0):
    """Runs each function in its own thread; returns their results in order and
    re-raises the first exception."""
    results = [None] * len(functions)
    errors = [None] * len(functions)

    def run(i):
        try:
            results[i] = functions[i]()
        except BaseException as e:  # noqa: B902 - handed to the caller
            errors[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(functions))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        assert not t.is_alive(), f"a peer thread did not finish within {timeout} s"
    for e in errors:
        if e is not None:
            raise e
    return results


def wait_until(predicate, timeout=20.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
