"""hivemind_cpp: decentralized deep learning for PyTorch, on the hivemind C++ library.

The API follows hivemind's Python one::

    import torch, hivemind_cpp as hm

    dht = hm.DHT(initial_peers=["10.0.0.1:31337"], run_id="my_run")
    opt = hm.Optimizer(dht=dht, run_id="my_run", target_batch_size=4096,
                       optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
                       batch_size_per_step=32)
    for x, y in loader:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step(loss=loss)

Classes: DHT, Optimizer (wraps a torch.optim optimizer), DecentralizedAverager
(with get_tensors() and step()), Codec / ErrorFeedback, StateServer and
load_state_from_peers, GlobalProgress; retain_freed_memory() (an allocator setting
for large models, see its docstring). Errors are hivemind_cpp.errors classes
(HivemindError and subclasses). Blocking calls release the GIL; the library's
threads never call into Python. The library's log lines go to the logger
"hivemind_cpp" (set_log_level sets the library's threshold, "warning" by default;
Optimizer(verbose=True) logs every round).
"""

import torch as _torch  # noqa: F401  (loads libtorch_python before the extension)

from . import errors
from ._core import (
    DHT,
    AveragingResult,
    Codec,
    DecentralizedAverager,
    DhtRecord,
    ErrorFeedback,
    GlobalProgress,
    OptimizerStats,
    PeerState,
    StateServer,
    StepControl,
    StepReport,
    TensorLock,
    decode,
    load_state_from_peers,
    payload_info,
    read_progress,
    retain_freed_memory,
)
from .errors import (
    AbortedError,
    CancelledError,
    DataLossError,
    DeadlineExceededError,
    FailedPreconditionError,
    HivemindError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
    UnimplementedError,
)
from ._core import get_log_level, set_log_level
from .optim import DecentralizedOptimizer, Optimizer

from . import _log

_log.start()

__version__ = "0.1.0"

__all__ = [
    "DHT",
    "AveragingResult",
    "Codec",
    "DecentralizedAverager",
    "DecentralizedOptimizer",
    "DhtRecord",
    "ErrorFeedback",
    "GlobalProgress",
    "Optimizer",
    "OptimizerStats",
    "PeerState",
    "StateServer",
    "StepControl",
    "StepReport",
    "TensorLock",
    "decode",
    "retain_freed_memory",
    "get_log_level",
    "set_log_level",
    "errors",
    "load_state_from_peers",
    "payload_info",
    "read_progress",
    "AbortedError",
    "CancelledError",
    "DataLossError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "HivemindError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "UnavailableError",
    "UnimplementedError",
]
