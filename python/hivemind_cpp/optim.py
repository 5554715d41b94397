"""hivemind_cpp.Optimizer: a torch.optim optimizer trained by a swarm of peers."""

import math
from typing import Callable, Iterable, Optional, Sequence, Union

import torch

from . import _core, _log
from .errors import InvalidArgumentError

__all__ = ["Optimizer", "DecentralizedOptimizer"]

OptimizerFactory = Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]


def _flat_params(optimizer: torch.optim.Optimizer):
    return [p for group in optimizer.param_groups for p in group["params"]]


class Optimizer:
    """Wraps a torch.optim optimizer so that peers of a swarm train one model together.

    The swarm trains toward ``target_batch_size`` samples per epoch (a collaborative
    step, not a pass over data). Each peer accumulates gradients over its
    mini-batches; when the swarm has gathered the target, the peers average their
    gradients (weighted by samples), each applies the wrapped optimizer and the
    epoch advances. Every ``average_state_every`` epochs they also average
    parameters. A peer behind the swarm (a newcomer) downloads parameters, optimizer
    state and epoch from the others at its next ``step()``.

    Args:
        dht: a hivemind_cpp.DHT (must stay alive while the optimizer lives).
        run_id: names the run; peers of one swarm use the same run_id and model.
        target_batch_size: samples the whole swarm gathers per epoch.
        optimizer: a torch.optim.Optimizer over the model's parameters, or a
            callable params -> optimizer (then ``params`` is required).
        params: the parameters (float32, CPU, contiguous, requires_grad); default:
            every parameter of ``optimizer``, in param_groups order.
        batch_size_per_step: samples per ``step()`` when step is not given one.
        scheduler: a torch LR scheduler, or a callable optimizer -> scheduler;
            stepped once per epoch after the optimizer (not per batch).
        grad_compression, state_compression: codec specs ("fp16", "blockwise4",
            ...) or Codec objects for gradients and parameters (None: float32).
        grad_error_feedback: error feedback for grad_compression.
        aggregation: how reducers combine gradients and parameters: "mean", or
            "centered_clip" (robust to Byzantine peers; every peer of a run must
            use the same; needs min_group_size >= 3). clip_tau: CenteredClip's
            radius as an RMS distance per element (0: automatic).
            clip_reject_ratio: CenteredClip leaves out contributions farther than
            this x the median distance from the median (0: none).
        use_local_updates: step the optimizer on every batch and average
            parameters each epoch instead of gradients.
        delay_updates: overlap gradient averaging with the next epoch's batches.
        diloco_outer_lr, diloco_outer_momentum: DiLoCo (> 0 enables it).
        average_state_every: average parameters every N epochs (0: never).
        matchmaking_time, averaging_timeout, load_state_timeout: seconds.
        target_group_size, min_group_size: averaging group sizes.
        client_mode: behind NAT (outgoing connections only, serves no state).
        auxiliary: help averaging without training (call ``step()`` in a loop).
        listen: "HOST:PORT" of the averaging endpoints (the port must be 0).
        bandwidth: announced for load balancing (0: unknown).
        load_state_max_donors: peers to download the state from at once.
        load_state_min_agreeing_donors: download only a state this many peers
            advertise (1: any single peer; 2 or more: a lone peer that claims a
            newer epoch cannot hand newcomers its own state).
        progress_log: a file that gets one JSON line per epoch ("" = none).
        swarm_secret, authorized_peers: a private swarm (docs/security.md): only
            peers that know the same secret (>= 16 bytes) or whose peer ids are
            listed may exchange data with this one.
        encrypt: CURVE on every connection (turn off only on a trusted network;
            every peer of the run must agree).
        verbose: log every averaging round ("epoch 3: finished averaging gradients
            with 4 peer(s)") at info level to the logger "hivemind_cpp", with a
            handler of its own if the application configured none (as hivemind
            does); see hivemind_cpp.set_log_level.

    Raises hivemind_cpp.InvalidArgumentError for bad arguments (with the library's
    message). Not thread-safe: call from the training thread. ``step()`` releases
    the GIL while it waits for the swarm; the wrapped optimizer is only ever called
    from the thread that calls ``step()`` (with the GIL held).
    """

    def __init__(
        self,
        *,
        dht: _core.DHT,
        run_id: str,
        target_batch_size: int,
        optimizer: Union[torch.optim.Optimizer, OptimizerFactory],
        params: Optional[Iterable[torch.Tensor]] = None,
        batch_size_per_step: Optional[int] = None,
        scheduler=None,
        grad_compression=None,
        state_compression=None,
        grad_error_feedback: bool = True,
        aggregation: str = "mean",
        clip_tau: float = 0.0,
        clip_reject_ratio: float = 10.0,
        use_local_updates: bool = False,
        delay_updates: bool = False,
        diloco_outer_lr: float = 0.0,
        diloco_outer_momentum: float = 0.9,
        average_state_every: int = 1,
        matchmaking_time: float = 5.0,
        target_group_size: int = 16,
        min_group_size: int = 2,
        averaging_timeout: float = 30.0,
        load_state_timeout: float = 120.0,
        client_mode: bool = False,
        auxiliary: bool = False,
        listen: str = "127.0.0.1:0",
        bandwidth: float = 0.0,
        load_state_max_donors: int = 3,
        load_state_min_agreeing_donors: int = 1,
        progress_log: str = "",
        swarm_secret: str = "",
        authorized_peers: Sequence[str] = (),
        encrypt: bool = True,
        verbose: bool = False,
    ):
        if verbose:
            _log.enable_verbose()
        if params is not None:
            params = list(params)
            if params and isinstance(params[0], dict):
                params = [p for group in params for p in group["params"]]
        if isinstance(optimizer, torch.optim.Optimizer):
            owned = _flat_params(optimizer)
            if params is None:
                params = owned
            elif [id(p) for p in params] != [id(p) for p in owned]:
                raise InvalidArgumentError(
                    "params must be the optimizer's parameters, in param_groups order"
                )
        elif callable(optimizer):
            if params is None:
                raise InvalidArgumentError("params is required when optimizer is a factory")
            optimizer = optimizer(params)
            params = _flat_params(optimizer)
        else:
            raise InvalidArgumentError(
                "optimizer must be a torch.optim.Optimizer or a callable params -> optimizer"
            )
        for i, p in enumerate(params):
            if not isinstance(p, torch.Tensor):
                raise InvalidArgumentError(f"parameter {i} is not a tensor")
        self.optimizer = optimizer
        self.params = params
        if scheduler is not None and not hasattr(scheduler, "step"):
            scheduler = scheduler(optimizer)
        self.scheduler = scheduler
        self.auxiliary = auxiliary
        self._impl = _core._DecentralizedOptimizer(
            dht,
            params,
            optimizer,
            run_id=run_id,
            target_batch_size=target_batch_size,
            batch_size_per_step=batch_size_per_step or 0,
            grad_compression=grad_compression,
            state_compression=state_compression,
            grad_error_feedback=grad_error_feedback,
            use_local_updates=use_local_updates,
            delay_updates=delay_updates,
            diloco_outer_lr=diloco_outer_lr,
            diloco_outer_momentum=diloco_outer_momentum,
            average_state_every=average_state_every,
            matchmaking_time=matchmaking_time,
            target_group_size=target_group_size,
            min_group_size=min_group_size,
            averaging_timeout=averaging_timeout,
            load_state_timeout=load_state_timeout,
            client_mode=client_mode,
            auxiliary=auxiliary,
            listen=listen,
            bandwidth=bandwidth,
            load_state_max_donors=load_state_max_donors,
            progress_log=progress_log,
            aggregation=aggregation,
            clip_tau=clip_tau,
            clip_reject_ratio=clip_reject_ratio,
            swarm_secret=swarm_secret,
            authorized_peers=list(authorized_peers),
            encrypt=encrypt,
            load_state_min_agreeing_donors=load_state_min_agreeing_donors,
        )
        self.dht = dht
        self.run_id = run_id

    def step(
        self,
        closure: Optional[Callable[[], torch.Tensor]] = None,
        batch_size: Optional[int] = None,
        loss: Union[None, float, torch.Tensor] = None,
    ) -> _core.StepReport:
        """Call after ``loss.backward()``: accumulates this batch's gradients.

        When the swarm has reached the target it averages with the peers (blocking,
        without the GIL, at most averaging_timeout) and applies the wrapped
        optimizer. ``batch_size``: samples in this batch (default:
        batch_size_per_step); ``loss`` (a float or tensor) goes to the progress log;
        ``closure``, as in torch.optim, recomputes the loss. Averaging failures are
        reported in the StepReport, not raised: the peer goes on with its local
        gradients. Raises InvalidArgumentError for a bad batch size or non-finite
        gradients (nothing is accumulated), CancelledError after shutdown, and
        whatever the wrapped optimizer's step() raised.
        """
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if isinstance(loss, torch.Tensor):
            loss = loss.detach().item()
        report = self._impl.step(batch_size or 0, math.nan if loss is None else float(loss))
        if report.epoch_advanced and self.scheduler is not None and not self.auxiliary:
            self.scheduler.step()
        return report

    def zero_grad(self, set_to_none: Optional[bool] = None) -> None:
        """Zeroes the parameters' gradients (the swarm's accumulators are kept)."""
        if set_to_none is None:
            self.optimizer.zero_grad()
        else:
            self.optimizer.zero_grad(set_to_none=set_to_none)

    @property
    def local_epoch(self) -> int:
        """This peer's epoch (collaborative steps done)."""
        return self._impl.local_epoch

    @property
    def progress(self) -> _core.GlobalProgress:
        """The swarm's progress: epoch, samples_per_second, num_peers, ETA."""
        return self._impl.progress

    @property
    def stats(self) -> _core.OptimizerStats:
        """Bytes sent and received, rounds averaged or failed, time spent waiting."""
        return self._impl.stats

    @property
    def peer_id(self) -> str:
        return self._impl.peer_id

    @property
    def param_groups(self):
        """The wrapped optimizer's param_groups (to read or set the learning rate)."""
        return self.optimizer.param_groups

    @property
    def is_alive(self) -> bool:
        return self._impl.is_alive

    def load_state_from_peers(self) -> None:
        """Downloads parameters, optimizer state and epoch from the most advanced
        peers. Raises NotFoundError when nobody serves state, DataLossError for a
        state of another model or optimizer."""
        self._impl.load_state_from_peers()

    def finish(self, window: float) -> None:
        """Ends a run that every peer stops at the same epoch, so that all end with
        the same parameters: a peer whose last epoch's round failed (it stepped
        alone) downloads that epoch's state from the others within `window` seconds;
        every peer keeps serving its state for `window` seconds, for those. Pass at
        least twice matchmaking_time plus a download's time. Raises NotFoundError or
        DeadlineExceededError when a straggler found no donor."""
        self._impl.finish(float(window))

    def save_checkpoint(self, path: str) -> None:
        """Saves parameters, optimizer state and epoch to path (atomically)."""
        self._impl.save_checkpoint(str(path))

    def load_checkpoint(self, path: str) -> None:
        """Restores a checkpoint. InvalidArgumentError for another model's,
        DataLossError for a damaged file, NotFoundError for a missing one."""
        self._impl.load_checkpoint(str(path))

    def shutdown(self) -> None:
        """Stops averaging, serving and tracking and joins every thread. Idempotent."""
        self._impl.shutdown()

    def __enter__(self) -> "Optimizer":
        return self

    def __exit__(self, *exc) -> bool:
        self.shutdown()
        return False

    def __repr__(self) -> str:
        return (
            f"Optimizer(run_id={self.run_id!r}, epoch={self.local_epoch}, "
            f"optimizer={type(self.optimizer).__name__})"
        )


DecentralizedOptimizer = Optimizer
