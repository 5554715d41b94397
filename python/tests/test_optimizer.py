"""hivemind_cpp.Optimizer over torch.optim optimizers: peers in threads of one
process training a small MLP on synthetic data, over a real DHT."""
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hivemind_cpp as hm
from conftest import run_in_threads, wait_until

RUN = "mlp"


def make_model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


class Peer:
    def __init__(self, dht, seed, **options):
        self.dht = dht
        self.model = make_model(seed)
        options.setdefault("target_batch_size", 96)
        options.setdefault("batch_size_per_step", 16)
        options.setdefault("matchmaking_time", 3.0)
        options.setdefault("averaging_timeout", 20.0)
        options.setdefault("target_group_size", 3)
        self.inner = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        self.opt = hm.Optimizer(dht=dht, run_id=RUN, optimizer=self.inner, **options)

    def batch(self, generator):
        x = torch.randn(16, 8, generator=generator)
        self.opt.zero_grad()
        loss = F.mse_loss(self.model(x), x @ torch.ones(8, 2))
        loss.backward()
        return self.opt.step(loss=loss)

    def train(self, epochs, seed):
        generator = torch.Generator().manual_seed(seed)
        reports = []
        while self.opt.local_epoch < epochs:
            reports.append(self.batch(generator))
            time.sleep(0.02)
        return reports


def start_together(peers):
    """Every peer publishes its progress and waits until it sees the others, so the
    first epoch does not end before the swarm has formed."""
    for peer in peers:
        peer.opt.step(batch_size=1)
    assert wait_until(lambda: all(p.opt.progress.num_peers == len(peers) for p in peers))


def momentum(peer):
    state = peer.inner.state
    return torch.cat([state[p]["momentum_buffer"].flatten() for p in peer.model.parameters()])


def test_local_updates_average_parameters_and_momentum(make_dht):
    peers = [Peer(make_dht(), seed, use_local_updates=True) for seed in (1, 2, 3)]
    try:
        start_together(peers)
        run_in_threads([lambda p=p, i=i: p.train(2, i) for i, p in enumerate(peers)])
        for peer in peers:
            assert peer.opt.local_epoch == 2
            assert torch.equal(flat(peer.model), flat(peers[0].model))
            # Local steps made the momentum buffers differ; the epoch averaged them.
            assert torch.equal(momentum(peer), momentum(peers[0]))
    finally:
        for peer in peers:
            peer.opt.shutdown()


def test_three_peers_train_and_their_parameters_agree(make_dht):
    peers = [Peer(make_dht(), seed) for seed in (1, 2, 3)]
    try:
        assert not torch.equal(flat(peers[0].model), flat(peers[1].model))
        start_together(peers)
        all_reports = run_in_threads([lambda p=p, i=i: p.train(3, i) for i, p in enumerate(peers)])
        for peer, reports in zip(peers, all_reports):
            assert peer.opt.local_epoch == 3
            assert any(r.epoch_advanced and r.group_size == 3 for r in reports)
            assert peer.opt.stats.rounds_ok > 0 and peer.opt.stats.bytes_sent > 0
        # The last epoch averaged parameters in one group of three: bit-identical.
        assert torch.equal(flat(peers[0].model), flat(peers[1].model))
        assert torch.equal(flat(peers[0].model), flat(peers[2].model))
        progress = peers[0].opt.progress
        assert progress.epoch >= 3 and progress.samples_per_second > 0
    finally:
        for peer in peers:
            peer.opt.shutdown()


def test_a_late_peer_loads_the_swarms_epoch_parameters_and_optimizer_state(make_dht):
    a, b = Peer(make_dht(), 1, target_group_size=2), Peer(make_dht(), 2, target_group_size=2)
    late = None
    try:
        start_together([a, b])
        run_in_threads([lambda: a.train(2, 11), lambda: b.train(2, 12)])
        assert a.opt.local_epoch == 2
        late = Peer(make_dht(), 99, target_group_size=3)
        assert not torch.equal(flat(late.model), flat(a.model))
        late.opt.load_state_from_peers()
        assert late.opt.local_epoch == 2
        assert torch.equal(flat(late.model), flat(a.model))
        # The SGD momentum buffers came along (torch.save / torch.load of state_dict).
        swarm_state = a.opt.optimizer.state_dict()["state"]
        late_state = late.opt.optimizer.state_dict()["state"]
        assert swarm_state.keys() == late_state.keys()
        for key in swarm_state:
            assert torch.equal(swarm_state[key]["momentum_buffer"],
                               late_state[key]["momentum_buffer"])
    finally:
        for peer in (a, b, late):
            if peer is not None:
                peer.opt.shutdown()


def test_finish_serves_for_the_window_and_leaves_agreeing_peers_as_they_are(make_dht):
    a, b = Peer(make_dht(), 1, target_group_size=2), Peer(make_dht(), 2, target_group_size=2)
    try:
        start_together([a, b])
        run_in_threads([lambda: a.train(2, 21), lambda: b.train(2, 22)])
        assert a.opt.local_epoch == b.opt.local_epoch == 2
        assert torch.equal(flat(a.model), flat(b.model))
        before = flat(a.model)
        with pytest.raises(hm.InvalidArgumentError, match="window"):
            a.opt.finish(window=-1.0)
        start = time.monotonic()
        run_in_threads([lambda: a.opt.finish(window=1.5), lambda: b.opt.finish(window=1.5)])
        assert time.monotonic() - start >= 1.5  # each kept serving its state that long
        assert torch.equal(flat(a.model), before) and torch.equal(flat(b.model), before)
        assert a.opt.local_epoch == b.opt.local_epoch == 2
    finally:
        for peer in (a, b):
            peer.opt.shutdown()


def test_checkpoints_round_trip(make_dht, tmp_path):
    peer = Peer(make_dht(), 5)
    try:
        path = tmp_path / "opt.ckpt"
        peer.opt.save_checkpoint(path)
        saved = flat(peer.model)
        with torch.no_grad():
            for p in peer.model.parameters():
                p.add_(1.0)
        peer.opt.load_checkpoint(path)
        assert torch.equal(flat(peer.model), saved)
        with pytest.raises(hm.NotFoundError, match="cannot open"):
            peer.opt.load_checkpoint(tmp_path / "missing")
        (tmp_path / "bad").write_bytes(b"not a checkpoint")
        with pytest.raises(hm.DataLossError):
            peer.opt.load_checkpoint(tmp_path / "bad")
    finally:
        peer.opt.shutdown()


def test_bad_arguments_raise_with_the_status_message(make_dht):
    dht = make_dht()
    model = make_model(0)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(hm.InvalidArgumentError, match="target_batch_size must be positive"):
        hm.Optimizer(dht=dht, run_id=RUN, target_batch_size=0, optimizer=sgd)
    with pytest.raises(hm.InvalidArgumentError, match="run_id is required"):
        hm.Optimizer(dht=dht, run_id="", target_batch_size=8, optimizer=sgd)
    with pytest.raises(hm.InvalidArgumentError, match="port 0"):
        hm.Optimizer(dht=dht, run_id=RUN, target_batch_size=8, optimizer=sgd,
                     listen="127.0.0.1:5555")
    with pytest.raises(hm.InvalidArgumentError, match="float32"):
        double = nn.Linear(2, 2).double()
        hm.Optimizer(dht=dht, run_id=RUN, target_batch_size=8,
                     optimizer=torch.optim.SGD(double.parameters(), lr=0.1))
    frozen = torch.zeros(3)
    with pytest.raises(hm.InvalidArgumentError, match="does not require grad"):
        hm.Optimizer(dht=dht, run_id=RUN, target_batch_size=8,
                     optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
                     params=[frozen])
    with pytest.raises(hm.InvalidArgumentError, match="unknown codec"):
        hm.Optimizer(dht=dht, run_id=RUN, target_batch_size=8, optimizer=sgd,
                     grad_compression="nonsense")
    with hm.Optimizer(dht=dht, run_id=RUN, target_batch_size=8, optimizer=sgd) as opt:
        with pytest.raises(hm.InvalidArgumentError, match="batch size must be positive"):
            opt.step()
        for p in model.parameters():
            p.grad = torch.full_like(p, float("nan"))
        with pytest.raises(hm.InvalidArgumentError, match="NaN"):
            opt.step(batch_size=4)
    with pytest.raises(hm.CancelledError, match="shut down"):
        opt.step(batch_size=4)


class Exploding(torch.optim.SGD):
    def step(self, closure=None):
        raise RuntimeError("boom from the inner optimizer")


def test_the_inner_optimizers_exception_reaches_the_caller(make_dht):
    model = make_model(0)
    with hm.Optimizer(dht=make_dht(), run_id="explode", target_batch_size=1000,
                      optimizer=Exploding(model.parameters(), lr=0.1),
                      use_local_updates=True) as opt:
        model(torch.randn(2, 8)).sum().backward()
        with pytest.raises(RuntimeError, match="boom from the inner optimizer"):
            opt.step(batch_size=2)


def test_verbose_logs_every_round_to_the_python_logger(make_dht, caplog):
    caplog.set_level("INFO", logger="hivemind_cpp")
    peers = [Peer(make_dht(), seed, verbose=True) for seed in (1, 2)]
    try:
        assert hm.get_log_level() == "info"
        start_together(peers)
        run_in_threads([lambda p=p, i=i: p.train(2, i) for i, p in enumerate(peers)])
        hm._log.flush(0.5)
        rounds = [r for r in caplog.records
                  if r.name == "hivemind_cpp" and "finished averaging" in r.getMessage()]
        assert rounds, [r.getMessage() for r in caplog.records]
        assert all(r.levelname == "INFO" for r in rounds)
        assert any("with 2 peer(s)" in r.getMessage() for r in rounds)
    finally:
        for peer in peers:
            peer.opt.shutdown()
        hm.set_log_level("warning")


def test_log_levels_are_checked_and_round_trip():
    hm.set_log_level("debug")
    assert hm.get_log_level() == "debug"
    hm.set_log_level("warning")
    assert hm.get_log_level() == "warning"
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        hm.set_log_level("loud")
