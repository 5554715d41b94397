"""DecentralizedAverager from Python: peers in threads of one process, real DHT and
real endpoints on 127.0.0.1."""
import threading
import time

import pytest
import torch

import hivemind_cpp as hm
from conftest import run_in_threads


def make_averagers(make_dht, prefix, initial, **options):
    options.setdefault("target_group_size", len(initial))
    options.setdefault("matchmaking_time", 3.0)
    return [hm.DecentralizedAverager(make_dht(), tensors, prefix=prefix, **options)
            for tensors in initial]


@pytest.mark.parametrize("num_peers", [2, 4])
def test_peers_reach_the_mean_and_gather_every_payload(make_dht, num_peers):
    initial = [[torch.full((4, 5), float(i)), torch.arange(3.0) * i] for i in range(num_peers)]
    averagers = make_averagers(make_dht, f"avg{num_peers}", initial)
    try:
        results = run_in_threads([
            lambda a=a, i=i: a.step(round="r0", gather=f"peer{i}".encode(), timeout=60)
            for i, a in enumerate(averagers)
        ])
        mean = (num_peers - 1) / 2
        for result in results:
            assert result.group_size == num_peers
            assert result.fully_averaged, result.span_errors
            assert sorted(result.gathered) == [f"peer{i}".encode() for i in range(num_peers)]
            assert sorted(result.peer_ids) == sorted(a.peer_id for a in averagers)
        assert sorted(r.my_index for r in results) == list(range(num_peers))
        for averager in averagers:
            with averager.get_tensors() as (matrix, vector):
                assert matrix.shape == (4, 5)
                assert torch.allclose(matrix, torch.full((4, 5), mean))
                assert torch.allclose(vector, torch.arange(3.0) * mean)
    finally:
        for a in averagers:
            a.shutdown()


def test_weights_views_and_handles(make_dht):
    # Sizes instead of tensors: zero-filled; the views write the averager's buffer.
    a, b = make_averagers(make_dht, "weighted", [[6], [6]])
    try:
        with a.get_tensors() as (x,):
            x.fill_(1.0)
            pointer = x.data_ptr()
        with b.get_tensors() as (x,):
            x.fill_(5.0)
        with a.get_tensors() as (x,):
            assert x.data_ptr() == pointer  # a view of the same buffer, no copy
        control = a.step(weight=3.0, round="w", wait=False)
        assert control.stage in ("queued", "looking_for_group", "averaging", "done")
        b.step(weight=1.0, round="w", timeout=30)
        assert control.result(timeout=30).group_size == 2
        assert control.done() and control.stage == "done"
        for averager in (a, b):
            with averager.get_tensors() as (x,):
                assert torch.allclose(x, torch.full((6,), 2.0))  # (3*1 + 1*5) / 4
    finally:
        a.shutdown()
        b.shutdown()


def test_a_lonely_step_times_out_without_holding_the_gil(make_dht):
    (averager,) = make_averagers(make_dht, "alone", [[3]], target_group_size=2,
                                 matchmaking_time=0.5)
    ticks = 0
    stop = threading.Event()

    def ticker():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.01)

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        with pytest.raises(hm.DeadlineExceededError, match="min_group_size") as info:
            averager.step(round="lonely", timeout=1.5, allow_retries=False)
        assert isinstance(info.value, TimeoutError)
    finally:
        stop.set()
        thread.join()
        averager.shutdown()
    assert ticks > 20  # the ticker ran while step() waited


def test_bad_arguments_raise_with_the_status_message(make_dht):
    dht = make_dht()
    with pytest.raises(hm.InvalidArgumentError, match="prefix"):
        hm.DecentralizedAverager(dht, [3], prefix="")
    with pytest.raises(hm.InvalidArgumentError, match="tensor"):
        hm.DecentralizedAverager(dht, [], prefix="p")
    with pytest.raises(hm.InvalidArgumentError, match="group"):
        hm.DecentralizedAverager(dht, [3], prefix="p", target_group_size=2, min_group_size=3)
    with pytest.raises(hm.InvalidArgumentError, match="unknown codec"):
        hm.DecentralizedAverager(dht, [3], prefix="p", compression="nonsense")
    with pytest.raises(hm.InvalidArgumentError, match="matchmaking_time must be > 0"):
        hm.DecentralizedAverager(dht, [3], prefix="p", matchmaking_time=-1)
    with hm.DecentralizedAverager(dht, [3], prefix="p") as averager:
        with pytest.raises(hm.InvalidArgumentError, match="weight"):
            averager.step(weight=-1.0, timeout=5)
        with pytest.raises(hm.InvalidArgumentError, match="gather"):
            averager.step(gather=b"x" * 5000, timeout=5)
    with pytest.raises(hm.CancelledError, match="shut down"):
        averager.step()
    with pytest.raises(hm.InvalidArgumentError, match="run"):
        hm.DHT(run_id="")
    with pytest.raises(hm.HivemindError):
        hm.DHT(["not an address"], run_id="x", bootstrap_timeout=1.0)


def test_state_sharing_between_two_averagers(make_dht):
    donor, loader = make_averagers(make_dht, "state", [[4], [4]])
    server = hm.StateServer(donor, prefix="pytest.state")
    try:
        with pytest.raises(hm.NotFoundError):
            hm.load_state_from_peers(loader, prefix="pytest.state", timeout=5)
        values = torch.arange(10.0)
        server.publish(hm.PeerState(7, values, extra=b"optimizer", metadata=b"schema"))
        # publish returns once a DHT node confirmed the advert; a lookup from another
        # node within the next millisecond can still miss it (OpenDHT, on 127.0.0.1:
        # 4 of 4 runs at once, 0 of 3 after 10 ms), so look until it shows.
        deadline = time.monotonic() + 10
        while True:
            with pytest.raises(hm.NotFoundError) as missing:
                hm.load_state_from_peers(loader, prefix="pytest.state", timeout=30,
                                         min_agreeing_donors=2)
            if "no peer advertises" not in str(missing.value) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert "no state is advertised by 2 donors" in str(missing.value)
        state = hm.load_state_from_peers(loader, prefix="pytest.state", timeout=30)
        assert state.epoch == 7 and torch.equal(state.values, values)
        assert state.extra == b"optimizer" and state.metadata == b"schema"
    finally:
        server.shutdown()
        donor.shutdown()
        loader.shutdown()


def test_retain_freed_memory_keeps_a_freed_large_block_in_the_heap():
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    hm.retain_freed_memory()
    size = 16 << 20
    before = libc.mallinfo2()
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    during = libc.mallinfo2()
    libc.free(block)
    after = libc.mallinfo2()
    assert during.hblks == before.hblks, "the block was mmapped on its own"
    assert after.fordblks >= size, "freed memory went back to the kernel"
