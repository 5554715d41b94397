// DecentralizedOptimizer: wraps a libtorch optimizer so that peers of a swarm train
// one model together (hivemind's Optimizer semantics).
//
// The swarm trains toward `target_batch_size` samples per epoch (an epoch is one
// collaborative step, not a pass over data). Each peer accumulates gradients over
// its own mini-batches and publishes its progress (ProgressTracker). When the swarm
// has gathered the target, peers average their accumulated gradients (weighted by
// samples), each applies the wrapped optimizer's step, and the epoch advances. Every
// `average_state_every` epochs they also average parameters. A peer that is behind
// the swarm's epoch (a newcomer, a restarted peer) downloads the state (parameters,
// optimizer state, epoch) from peers before it trains on. So does, at its next step,
// a trainer whose gradient or parameter round failed while the swarm had other
// trainers (it stepped alone and its parameters left the swarm's): it takes the
// state of that epoch or a later one, waiting at most averaging_timeout, and trains
// on with its own parameters if none comes (gradient averaging without delayed
// updates and with the mean; local updates and DiLoCo average parameters anyway, and
// with CenteredClip a state from one possibly Byzantine donor is not worth the risk). A
// peer behind whose donors serve only an older state than the swarm's epoch takes it,
// moves to the swarm's epoch, and looks for a newer state at the next epoch.
//
// A single-process loop becomes a swarm loop by changing the optimizer:
//
//   auto dht = OpenDhtNode::Create({.run_id = "mnist", .initial_peers = {addr}});
//   OptimizerOptions options;
//   options.run_id = "mnist";
//   options.target_batch_size = 4096;
//   auto opt = DecentralizedOptimizer::Create(
//       dht->get(), model->parameters(),
//       std::make_unique<torch::optim::Adam>(model->parameters(), 1e-3), options);
//   for (auto& batch : loader) {
//     (*opt)->ZeroGrad();
//     auto loss = torch::nll_loss(model->forward(batch.data), batch.target);
//     loss.backward();
//     (*opt)->Step(batch.data.size(0), loss.item<double>());
//   }
//
// Modes (OptimizerOptions): gradient averaging (default); local updates (the inner
// optimizer steps on every batch, parameters are averaged at each epoch); DiLoCo
// (local updates, then the averaged pseudo-gradient, old minus new parameters, is
// applied by an outer Nesterov SGD); auxiliary peers (help average, do not train);
// client mode (behind NAT: outgoing connections only, serves no state).
#ifndef HIVEMIND_OPTIM_OPTIMIZER_H_
#define HIVEMIND_OPTIM_OPTIMIZER_H_

#include <torch/optim/optimizer.h>
#include <torch/optim/schedulers/lr_scheduler.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hivemind/averaging/allreduce.h"
#include "hivemind/averaging/group.h"
#include "hivemind/codec/codec.h"
#include "hivemind/dht/dht.h"
#include "hivemind/export.h"
#include "hivemind/net/endpoint.h"
#include "hivemind/optim/epoch_log.h"
#include "hivemind/optim/progress_tracker.h"

namespace hivemind {

struct HIVEMIND_EXPORT OptimizerOptions {
  // Names the training run; every DHT key of the optimizer starts with it. Peers of
  // one swarm use the same run id and model. Required.
  std::string run_id;

  // Samples the whole swarm gathers per epoch. Required (> 0).
  int64_t target_batch_size = 0;

  // Samples of one Step call when Step is given none. Default: 0 (Step must be
  // given the batch size).
  int64_t batch_size_per_step = 0;

  // Matchmaking: one attempt, and the group sizes. Defaults: 5 s, 16, 2.
  absl::Duration matchmaking_time = absl::Seconds(5);
  int target_group_size = 16;
  int min_group_size = 2;

  // One averaging round (matchmaking and all-reduce). Default: 30 s.
  absl::Duration averaging_timeout = absl::Seconds(30);

  // Downloading the state from peers. Default: 120 s.
  absl::Duration load_state_timeout = absl::Seconds(120);

  // Average parameters every this many epochs (0: never; local-updates and DiLoCo
  // modes average them at every epoch). Default: 1.
  int average_state_every = 1;

  // Codecs for gradients (or pseudo-gradients) and for parameters. Not owned; must
  // outlive the optimizer. Null: raw float32. Defaults: null.
  const Codec* grad_codec = nullptr;
  const Codec* state_codec = nullptr;
  // Error feedback for grad_codec. Default: true.
  bool grad_error_feedback = true;
  // How reducers combine what the peers average - gradients (or pseudo-gradients),
  // parameters and optimizer statistics: the mean, or CenteredClip against
  // Byzantine peers (a peer whose rounds fail steps alone, so its parameters are as
  // suspect as its gradients), and which contributions they reject
  // (AllReduceOptions::aggregation). Every peer of a run must use the same.
  // CenteredClip needs an honest majority (by weight) in every group: with groups
  // of 2 it is the mean, so set min_group_size >= 3. Default: the mean.
  AggregationOptions aggregation;

  // Overlap averaging with computation (delayed updates): at the end of an epoch
  // the gradient averaging starts in the background and training goes on with the
  // next epoch's batches; the averaged gradients are applied (one epoch late) by
  // the first Step after the round ends, at the latest at the next epoch's end.
  // Gradient-averaging mode only. Default: false.
  bool delay_updates = false;

  // Local updates: the inner optimizer steps on every batch; at each epoch the
  // peers average parameters instead of gradients. Default: false.
  bool use_local_updates = false;

  // DiLoCo: > 0 enables it with this outer learning rate (implies local updates).
  // At each epoch the peers average old-minus-new parameters and apply them with
  // Nesterov SGD (outer_momentum) to the parameters of the previous epoch.
  // Default: 0 (off).
  double diloco_outer_lr = 0.0;
  double diloco_outer_momentum = 0.9;

  // kNode, kClient (needs endpoint.client_mode) or kAuxiliary (does not train:
  // call Step with batch size 0 in a loop; it joins every averaging round with
  // weight 0). Default: kNode.
  MemberMode mode = MemberMode::kNode;

  // The endpoints' options (each of the three averagers has one: gradients,
  // parameters plus state serving, and the optimizer's statistics, made at the first
  // state round). The listen address's port must be 0 (each endpoint takes a free
  // one). Default: 127.0.0.1, free ports.
  EndpointOptions endpoint;

  // Announced bandwidth for load balancing (0 = unknown). Default: 0.
  double bandwidth = 0.0;

  // State-load compression, chosen apart from the averaging codecs: the zstd level
  // of the state this peer serves to newcomers (lossless; 0 = raw). Default: 0.
  int state_load_zstd_level = 0;

  // Donors to download state from at once. Default: 3.
  int load_state_max_donors = 3;

  // A state is downloaded only if this many donors advertise it
  // (LoadStateOptions::min_agreeing_donors). Default: 1 (any single donor).
  int load_state_min_agreeing_donors = 1;

  // Stepped once per epoch, after the inner optimizer. Not owned; may be null.
  torch::optim::LRScheduler* scheduler = nullptr;

  // Called at the end of every epoch, on the training thread inside Step, with
  // what the epoch did (epoch_log.h; AppendEpochJsonLines writes JSON lines).
  // Default: none.
  EpochCallback on_epoch;
};

// What one Step did.
struct HIVEMIND_EXPORT OptimizerStepReport {
  bool epoch_advanced = false;  // this call ended an epoch
  bool loaded_state = false;    // this call downloaded the state from peers
  // When the epoch advanced: the outcome of averaging (OK, or why this peer went on
  // with its local values) and the size of its group (1 when alone).
  absl::Status averaging_status;
  int group_size = 1;
  int64_t epoch = 0;  // the local epoch after the call
};

// What the DecentralizedOptimizer needs from the optimizer it wraps. WrapTorchOptimizer
// adapts a torch::optim::Optimizer; the Python bindings adapt a torch.optim one.
// Called from the thread that calls DecentralizedOptimizer::Step.
class HIVEMIND_EXPORT InnerOptimizer {
 public:
  virtual ~InnerOptimizer() = default;
  // Applies the gradients held in the parameters' .grad (optimizer.step()).
  virtual absl::Status Step() = 0;
  virtual void ZeroGrad() = 0;
  // The optimizer's state (moments, step counts), as bytes only LoadState reads.
  virtual absl::StatusOr<std::string> SaveState() = 0;
  // kDataLoss for bytes SaveState did not write (of another optimizer or model).
  virtual absl::Status LoadState(const std::string& bytes) = 0;
  // The optimizer's running statistics (Adam's moments, SGD's momentum: float32,
  // contiguous, CPU), averaged in place together with the parameters. The same list
  // on every peer of a swarm (same model and optimizer, after its first step).
  // Default: none.
  virtual std::vector<torch::Tensor> Statistics() { return {}; }
};

// Adapts a libtorch optimizer (state bytes: torch::serialize archives). Statistics:
// the moment and momentum buffers of Adam, AdamW, SGD, RMSprop and Adagrad.
HIVEMIND_EXPORT std::unique_ptr<InnerOptimizer> WrapTorchOptimizer(
    std::unique_ptr<torch::optim::Optimizer> optimizer);

// Counters since creation.
struct HIVEMIND_EXPORT OptimizerStats {
  uint64_t bytes_sent = 0;  // all-reduce message bodies, every averager
  uint64_t bytes_received = 0;
  int64_t rounds_ok = 0;      // averaging rounds that averaged everything
  int64_t rounds_failed = 0;  // rounds that left (some) local values
  // Time Step spent waiting: for averaging rounds and for state downloads. The
  // rest of the training loop's time is computation.
  absl::Duration wait_time;
};

namespace internal {
class OptimizerCore;
}  // namespace internal

// Thread safety: not thread-safe; call from the training thread. Background threads
// (progress tracking, averaging, state serving) are joined by Shutdown, which the
// destructor calls. The Dht must outlive the optimizer.
class HIVEMIND_EXPORT DecentralizedOptimizer {
 public:
  // `params` are the model's parameters (float32, contiguous; on the CPU, or on a
  // CUDA device with a CUDA build of libtorch: gradients, parameters and statistics
  // are then copied to host memory for averaging and back, with torch's own copies);
  // `inner` the optimizer over the same parameters. Returns kInvalidArgument for bad
  // options or parameters, or the errors of the endpoints and the DHT.
  static absl::StatusOr<std::unique_ptr<DecentralizedOptimizer>> Create(
      Dht* dht, std::vector<torch::Tensor> params,
      std::unique_ptr<torch::optim::Optimizer> inner, OptimizerOptions options);
  // The same over any InnerOptimizer.
  static absl::StatusOr<std::unique_ptr<DecentralizedOptimizer>> Create(
      Dht* dht, std::vector<torch::Tensor> params, std::unique_ptr<InnerOptimizer> inner,
      OptimizerOptions options);

  ~DecentralizedOptimizer();
  DecentralizedOptimizer(const DecentralizedOptimizer&) = delete;
  DecentralizedOptimizer& operator=(const DecentralizedOptimizer&) = delete;

  // Call after backward(): accumulates this batch's gradients (`batch_size`
  // samples; <= 0 uses batch_size_per_step) and, when the swarm has reached the
  // target, averages with peers and applies the inner optimizer. Blocks during
  // averaging (at most averaging_timeout) and state loading. `loss` (optional) is
  // averaged into the epoch's summary (on_epoch). Failures of averaging are reported, not
  // returned: the peer goes on with its local gradients. Returns kInvalidArgument
  // for a bad batch size or non-finite gradients (nothing is accumulated),
  // kCancelled after Shutdown.
  absl::StatusOr<OptimizerStepReport> Step(int64_t batch_size = 0,
                                           double loss = std::nan(""));

  // Zeroes the parameters' gradients (the accumulated ones are kept).
  void ZeroGrad();

  // Downloads parameters, optimizer state and epoch from the most advanced peers.
  // kNotFound when no peer serves state; other codes as LoadStateFromPeers.
  absl::Status LoadStateFromPeers();

  // Saves parameters, optimizer state and epoch to `path` (atomically: a temporary
  // file renamed over it), and restores them. kInvalidArgument for a checkpoint of
  // another model; kDataLoss for a damaged file; kNotFound/kPermissionDenied from
  // the file system.
  absl::Status SaveCheckpoint(const std::string& path);
  absl::Status LoadCheckpoint(const std::string& path);

  int64_t local_epoch() const;
  OptimizerStats stats() const;
  // The swarm as the progress tracker sees it.
  GlobalProgress global_progress() const;
  // The wrapped optimizer.
  InnerOptimizer& inner();
  // This peer's id (the id of its parameter averager's endpoint).
  const PeerId& id() const;

  // Ends a run that every peer stops at the same epoch, so that all end with the
  // same parameters: a peer whose last epoch's rounds failed while others were
  // there (it stepped alone) downloads the state of its epoch from them, within
  // `window`; every other peer keeps serving its state for `window` after the call,
  // for those. Pass at least twice the matchmaking time plus a download's time (a
  // straggler's failed rounds end that much after the others'). kNotFound or
  // kDeadlineExceeded when a straggler found no donor; OK otherwise.
  absl::Status Finish(absl::Duration window);

  // Stops averaging, serving and tracking and joins every thread. Idempotent.
  void Shutdown();

 private:
  explicit DecentralizedOptimizer(std::unique_ptr<internal::OptimizerCore> core);
  std::unique_ptr<internal::OptimizerCore> core_;
};

}  // namespace hivemind

#endif  // HIVEMIND_OPTIM_OPTIMIZER_H_
