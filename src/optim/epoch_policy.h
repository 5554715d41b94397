// EpochPolicy: what one mode of the DecentralizedOptimizer does with an epoch's
// batches and at the epoch's end, over the small core that tracks progress, catches
// up and averages parameters (optimizer_core.cc). One policy per mode:
//
//   GradientAveraging  accumulates gradients; at the epoch's end averages them
//                      (weighted by samples) and applies the inner optimizer.
//   DelayedUpdates     the same round started in the background at the epoch's end
//                      and applied one epoch late (the first Step after it ends).
//   LocalUpdates       the inner optimizer steps on every batch; nothing is averaged
//                      but the parameters (the core, every epoch).
//   DiLoCo             local updates, then the averaged pseudo-gradient (anchor
//                      minus parameters) applied to the anchor by an outer Nesterov
//                      SGD.
//
// An auxiliary peer (it trains on no data) runs its mode's rounds with weight 0 and
// applies nothing: a role beside the mode, not a mode (optimizer_core.cc paces it).
#ifndef HIVEMIND_SRC_OPTIM_EPOCH_POLICY_H_
#define HIVEMIND_SRC_OPTIM_EPOCH_POLICY_H_

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "hivemind/averaging/averager.h"
#include "hivemind/optim/optimizer.h"
#include "optim/epoch_rounds.h"
#include "optim/torch_model.h"

namespace hivemind {
namespace internal {

// What a policy uses of the optimizer; all owned by it, outliving the policy.
struct EpochContext {
  const OptimizerOptions& options;
  TorchModel& model;
  InnerOptimizer& inner;
  EpochRounds& rounds;
  DecentralizedAverager& averager;  // of gradients, or DiLoCo's pseudo-gradients
  bool auxiliary;                   // averages, never applies
};

// The epoch that ends: its number and the samples this peer gathered in it.
struct EpochEnd {
  int64_t epoch = 0;
  int64_t samples = 0;
};

class EpochPolicy {
 public:
  explicit EpochPolicy(const EpochContext& context) : context_(context) {}
  virtual ~EpochPolicy() = default;
  EpochPolicy(const EpochPolicy&) = delete;
  EpochPolicy& operator=(const EpochPolicy&) = delete;

  // A trainer's batch, its gradients checked finite: accumulate or step.
  virtual void OnBatch(const std::vector<torch::Tensor>& grads, int64_t batch_size) = 0;
  // After a trainer's OnBatch: applies a background round that has ended.
  virtual void Poll(OptimizerStepReport* /*report*/) {}
  // The epoch's round and what the mode applies from it; sets the report's
  // averaging_status and group_size. Returns the outcome of a round whose failure
  // leaves this peer's parameters apart from the swarm's (OK when there is none).
  virtual absl::Status EndEpoch(const EpochEnd& end, OptimizerStepReport* report) = 0;

  // The epochs this peer may trail the swarm and still meet it in a round.
  virtual uint64_t allowed_lag() const { return 0; }
  // Whether a background round is in flight.
  virtual bool round_in_flight() const { return false; }
  // Whether a failed round sends this peer to reload the state (CatchUp). Modes that
  // average parameters at every epoch do not need it.
  virtual bool resyncs_after_failed_round() const { return true; }
  // Forgets a background round (the peer catches up: its update no longer fits).
  virtual void DropRound() {}
  // The parameters were replaced by a loaded state's `params`.
  virtual void Rebase(const std::vector<float>& /*params*/) { DropRound(); }

 protected:
  // Steps the inner optimizer on the gradients in .grad; a failure is logged.
  void StepInner();

  const EpochContext context_;
};

std::unique_ptr<EpochPolicy> MakeEpochPolicy(const EpochContext& context);
// Whether the mode of `options` sums gradients over the epoch (no: it steps locally).
bool AccumulatesGradients(const OptimizerOptions& options);

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_SRC_OPTIM_EPOCH_POLICY_H_
