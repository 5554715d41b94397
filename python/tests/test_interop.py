"""A C++ peer and a Python peer in one swarm: the C++ Fashion-MNIST trainer
(examples/fashion_mnist_trainer, run as a child process) joins the Python peer's DHT
and the two average gradients and parameters of the same MLP together."""
import os
import pathlib
import subprocess
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hivemind_cpp as hm
from conftest import wait_until

DATA_DIR = "/usr/share/datasets/fashion-mnist"


def find_trainer():
    candidates = []
    if os.environ.get("HIVEMIND_BUILD_DIR"):
        candidates.append(pathlib.Path(os.environ["HIVEMIND_BUILD_DIR"]))
    # In a build tree the extension sits in <build>/python/hivemind_cpp/.
    candidates.append(pathlib.Path(hm._core.__file__).resolve().parents[2])
    for build in candidates:
        trainer = build / "examples" / "fashion_mnist_trainer"
        if trainer.is_file():
            return trainer
    return None


class Mlp(nn.Module):
    """The C++ trainer's model: same layers, same parameter order and sizes."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


def test_a_cpp_trainer_and_a_python_peer_average_together():
    trainer = find_trainer()
    if trainer is None or not os.path.isdir(DATA_DIR):
        pytest.skip("needs the built examples/fashion_mnist_trainer and dataset-fashion-mnist")
    run_id = "mixed_swarm"
    epochs = 3
    dht = hm.DHT(run_id=run_id)
    torch.manual_seed(0)
    model = Mlp()
    opt = hm.Optimizer(dht=dht, run_id=run_id, target_batch_size=2048, batch_size_per_step=64,
                       optimizer=torch.optim.Adam(model.parameters(), lr=3e-3),
                       matchmaking_time=5.0, target_group_size=2, average_state_every=1)
    opt.step(batch_size=1)  # publishes this peer's progress before the C++ peer starts
    child = subprocess.Popen(
        [str(trainer), f"--initial_peers={dht.address}", f"--run_id={run_id}",
         f"--data_dir={DATA_DIR}", "--target_batch_size=2048", "--batch_size=64",
         f"--epochs={epochs}", "--average_state_every=1", "--target_group_size=2",
         "--matchmaking_time=5", "--max_seconds=90", "--report_every=100"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reports = []
    try:
        assert wait_until(lambda: opt.progress.num_peers == 2, timeout=30), "no C++ peer seen"
        generator = torch.Generator().manual_seed(1)
        deadline = time.monotonic() + 90
        while opt.local_epoch < epochs and time.monotonic() < deadline:
            x = torch.randn(64, 784, generator=generator)
            y = torch.randint(0, 10, (64,), generator=generator)
            opt.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()
            reports.append(opt.step(loss=loss))
            time.sleep(0.005)
        output, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        opt.shutdown()
        dht.shutdown()
    assert child.returncode == 0, output
    assert "averaged with 2 peer(s)" in output, output
    assert any(r.epoch_advanced and r.group_size == 2 and r.averaging_ok for r in reports), (
        reports, output)
    assert opt.local_epoch >= epochs
