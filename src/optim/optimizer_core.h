// OptimizerCore: the DecentralizedOptimizer's small core - progress tracking, the
// averagers, catching up with the swarm (CatchUp), parameter rounds, state serving
// and checkpoints - over which an EpochPolicy does what its mode does with batches
// and epochs. Not thread-safe: the training thread calls it (optimizer.h).
#ifndef HIVEMIND_SRC_OPTIM_OPTIMIZER_CORE_H_
#define HIVEMIND_SRC_OPTIM_OPTIMIZER_CORE_H_

#include <torch/types.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hivemind/averaging/averager.h"
#include "hivemind/averaging/state_sharing.h"
#include "hivemind/optim/optimizer.h"
#include "optim/catch_up.h"
#include "optim/epoch_policy.h"
#include "optim/epoch_rounds.h"
#include "optim/torch_model.h"

namespace hivemind {
namespace internal {

class OptimizerCore {
 public:
  OptimizerCore(Dht* dht, std::vector<torch::Tensor> params,
                std::unique_ptr<InnerOptimizer> inner, OptimizerOptions options);
  ~OptimizerCore() { Shutdown(); }
  OptimizerCore(const OptimizerCore&) = delete;
  OptimizerCore& operator=(const OptimizerCore&) = delete;

  absl::Status Start();
  absl::StatusOr<OptimizerStepReport> Step(int64_t batch_size, double loss);
  // Downloads the swarm's state, of epoch `min_epoch` or later, waiting at most
  // `timeout` (default: the options' load_state_timeout).
  absl::Status LoadStateFromPeers(
      std::optional<absl::Duration> timeout = std::nullopt,
      int64_t min_epoch = std::numeric_limits<int64_t>::min());
  absl::Status SaveCheckpoint(const std::string& path);
  absl::Status LoadCheckpoint(const std::string& path);
  void ZeroGrad() { inner_->ZeroGrad(); }
  int64_t local_epoch() const { return local_epoch_; }
  const OptimizerStats& stats() const { return stats_; }
  GlobalProgress global_progress() const { return tracker_->global_progress(); }
  InnerOptimizer& inner() { return *inner_; }
  const PeerId& id() const { return state_averager_->endpoint()->id(); }
  absl::Status Finish(absl::Duration window);
  void Shutdown();

 private:
  bool auxiliary() const { return options_.mode == MemberMode::kAuxiliary; }
  absl::StatusOr<std::unique_ptr<DecentralizedAverager>> MakeAverager(
      const std::string& name, const std::vector<size_t>& sizes, const Codec* codec,
      bool error_feedback);

  // The three paths of Step: a download instead of training, an auxiliary peer's
  // pacing (false: not yet time for a round), a trainer's batch.
  void CatchUpWithSwarm(const CatchUp::Plan& plan, uint64_t swarm_epoch,
                        OptimizerStepReport* report);
  bool AuxiliaryReady(uint64_t swarm_epoch);
  absl::Status TrainOn(int64_t batch_size, double loss, OptimizerStepReport* report);

  // Empties the gradient accumulator and this epoch's sample count.
  void StartAccumulating();
  void EndEpoch(OptimizerStepReport* report);
  // Moves this peer to `epoch` (its parameters unchanged).
  void JumpTo(int64_t epoch);
  // After a round that failed while others trained: the next Step loads the state
  // (CatchUp::RoundFailed).
  void NoteRound(const absl::Status& round);
  // Whether the tracker sees trainers besides this peer.
  bool OthersTrain() const;
  void AverageParameters();
  // Starts averaging the inner optimizer's statistics, flattened into `flat` (none:
  // an empty list, no round).
  std::vector<torch::Tensor> StartStatistics(std::vector<float>* flat,
                                             std::optional<StepHandle>* step);

  std::string Schema() const;
  absl::StatusOr<PeerState> CurrentState() const;
  absl::Status ApplyState(const PeerState& state);
  void PublishState();
  void ReportEpoch(const OptimizerStepReport& report);

  Dht* const dht_;
  std::unique_ptr<InnerOptimizer> inner_;
  const OptimizerOptions options_;
  TorchModel model_;
  OptimizerStats stats_;
  EpochRounds rounds_;

  std::unique_ptr<ProgressTracker> tracker_;
  std::unique_ptr<DecentralizedAverager> grad_averager_;
  std::unique_ptr<DecentralizedAverager> state_averager_;
  // The optimizer's statistics, averaged beside the parameters; made at the first
  // state round (they exist only after the inner optimizer's first step).
  std::unique_ptr<DecentralizedAverager> stats_averager_;
  std::unique_ptr<StateServer> state_server_;  // null in client mode
  std::unique_ptr<EpochPolicy> policy_;        // made by Start

  CatchUp catch_up_;
  int64_t samples_ = 0;  // this epoch's, this peer's
  int64_t local_epoch_ = 0;
  double loss_sum_ = 0.0;
  int64_t loss_count_ = 0;
  bool shut_down_ = false;
};

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_SRC_OPTIM_OPTIMIZER_CORE_H_
