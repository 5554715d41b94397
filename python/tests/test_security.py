"""Private swarms from Python: peers with the swarm's secret average together, an
outsider is refused (real DHT and endpoints on 127.0.0.1)."""
import pytest
import torch

import hivemind_cpp as hm
from conftest import run_in_threads

SECRET = "our swarm's secret, long enough"


def test_only_members_of_a_private_swarm_average_together(make_dht):
    members = [hm.DecentralizedAverager(make_dht(), [torch.full((8,), float(v))],
                                        prefix="private", target_group_size=3,
                                        matchmaking_time=2.0, swarm_secret=SECRET)
               for v in (1.0, 3.0)]
    outsider = hm.DecentralizedAverager(make_dht(), [torch.full((8,), 100.0)],
                                        prefix="private", target_group_size=3,
                                        matchmaking_time=2.0)
    try:
        def outsider_step():
            with pytest.raises(hm.HivemindError):
                outsider.step(round="r0", timeout=30)
            return None

        results = run_in_threads([lambda a=a: a.step(round="r0", timeout=30)
                                  for a in members] + [outsider_step])
        for result in results[:2]:
            assert result.group_size == 2
            assert outsider.peer_id not in result.peer_ids
        for averager in members:
            with averager.get_tensors() as (x,):
                assert torch.equal(x, torch.full((8,), 2.0))
        with outsider.get_tensors() as (x,):
            assert torch.equal(x, torch.full((8,), 100.0))
    finally:
        for a in members + [outsider]:
            a.shutdown()


def test_bad_swarm_options_raise_value_errors(make_dht):
    with pytest.raises(ValueError):
        hm.DecentralizedAverager(make_dht(), [4], prefix="bad", swarm_secret="short")
    with pytest.raises(ValueError):
        hm.DecentralizedAverager(make_dht(), [4], prefix="bad",
                                 authorized_peers=["not a peer id"])
