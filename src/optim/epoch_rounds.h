// EpochRounds: one averaging round of an epoch through one of the optimizer's
// averagers - the values copied in, the round queued, its outcome waited for and
// counted (OptimizerStats), the average copied out - and its log line.
#ifndef HIVEMIND_SRC_OPTIM_EPOCH_ROUNDS_H_
#define HIVEMIND_SRC_OPTIM_EPOCH_ROUNDS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "hivemind/averaging/averager.h"
#include "hivemind/optim/optimizer.h"

namespace hivemind {
namespace internal {

class EpochRounds {
 public:
  // `options` and `stats` must outlive this object.
  EpochRounds(const OptimizerOptions& options, OptimizerStats* stats)
      : options_(options), stats_(stats) {}

  // Queues the round of `epoch` (one matchmaking attempt: a peer that found no
  // group has missed the swarm's round, and its next Step catches up instead). The
  // round averages `values` in place (StepOptions::values, no copy): they must stay
  // untouched until Finish returns.
  StepHandle Start(DecentralizedAverager& averager, absl::Span<float> values,
                   float weight, int64_t epoch);
  // Waits for `step`, whose values then hold the average (or, where the round
  // failed, the local values). Returns its outcome and sets `group_size`.
  absl::Status Finish(const StepHandle& step, int* group_size);
  absl::Status Average(DecentralizedAverager& averager, absl::Span<float> values,
                       float weight, int64_t epoch, int* group_size) {
    return Finish(Start(averager, values, weight, epoch), group_size);
  }

  // One line per round: info when it succeeded (hivemind's "Finished averaging
  // round"), a warning when it failed.
  static void Log(absl::string_view what, int64_t epoch, const absl::Status& status,
                  int group_size);

 private:
  const OptimizerOptions& options_;
  OptimizerStats* const stats_;
};

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_SRC_OPTIM_EPOCH_ROUNDS_H_
