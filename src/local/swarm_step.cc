#include "hivemind/local/swarm_step.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hivemind {

SwarmStep AveragerSwarmStep(DecentralizedAverager* averager, StepOptions options,
                            StepResult* result) {
  return [averager, options = std::move(options), result](
             absl::Span<float> average, float total_weight) -> absl::Status {
    {
      TensorLock tensors = averager->LockTensors();
      if (tensors.flat().size() != average.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("the local average has ", average.size(),
                         " values, the averager's tensors ", tensors.flat().size()));
      }
      std::copy(average.begin(), average.end(), tensors.flat().begin());
    }
    StepOptions step_options = options;
    step_options.weight = total_weight;
    absl::StatusOr<StepResult> step = averager->Step(step_options).Wait();
    if (!step.ok()) return step.status();
    {
      TensorLock tensors = averager->LockTensors();
      std::copy(tensors.flat().begin(), tensors.flat().end(), average.begin());
    }
    if (result != nullptr) *result = *std::move(step);
    return absl::OkStatus();
  };
}

}  // namespace hivemind
