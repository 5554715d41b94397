#include "optim/epoch_rounds.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "hivemind/util/logging.h"

namespace hivemind {
namespace internal {

StepHandle EpochRounds::Start(DecentralizedAverager& averager, absl::Span<float> values,
                              float weight, int64_t epoch) {
  StepOptions step;
  step.values = values;
  step.weight = weight;
  step.round = absl::StrCat("e", epoch);
  step.timeout = options_.averaging_timeout;
  step.allow_retries = false;
  return averager.Step(step);
}

absl::Status EpochRounds::Finish(const StepHandle& step, int* group_size) {
  const absl::Time start = absl::Now();
  absl::StatusOr<StepResult> result = step.Wait();
  stats_->wait_time += absl::Now() - start;
  if (!result.ok()) {
    ++stats_->rounds_failed;
    return result.status();
  }
  stats_->bytes_sent += result->report.bytes_sent;
  stats_->bytes_received += result->report.bytes_received;
  *group_size = static_cast<int>(result->group.members.size());
  for (const SpanOutcome& span : result->report.spans) {
    if (!span.status.ok()) {
      ++stats_->rounds_failed;
      return absl::Status(
          span.status.code(),
          absl::StrCat("part of the vector kept local values: ", span.status.message()));
    }
  }
  ++stats_->rounds_ok;
  return absl::OkStatus();
}

void EpochRounds::Log(absl::string_view what, int64_t epoch, const absl::Status& status,
                      int group_size) {
  if (status.ok()) {
    HIVEMIND_LOG(kInfo, "epoch ", epoch, ": finished averaging ", what, " with ",
                 group_size, " peer(s)");
  } else {
    HIVEMIND_LOG(kWarning, "epoch ", epoch, ": averaging ", what, " failed (",
                 status.ToString(), "); going on with local values");
  }
}

}  // namespace internal
}  // namespace hivemind
