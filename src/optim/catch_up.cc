#include "optim/catch_up.h"

#include <utility>

namespace hivemind {
namespace internal {

CatchUp::Plan CatchUp::Next(uint64_t swarm_epoch, int64_t local_epoch,
                            uint64_t allowed_lag, bool round_in_flight) {
  const bool missed = std::exchange(missed_round_, false) && !round_in_flight;
  Plan plan;
  if (swarm_epoch > static_cast<uint64_t>(local_epoch) + allowed_lag ||
      (reload_at_ > 0 && swarm_epoch >= reload_at_)) {
    plan.load = Load::kCatchUp;
  } else if (missed) {
    plan.load = Load::kResync;
    plan.min_epoch = local_epoch - 1;
  }
  return plan;
}

std::optional<int64_t> CatchUp::Loaded(const Plan& plan, bool ok, uint64_t swarm_epoch,
                                       int64_t local_epoch, uint64_t allowed_lag) {
  if (plan.load == Load::kResync) {
    if (ok) reload_at_ = 0;
    return std::nullopt;
  }
  if (plan.load != Load::kCatchUp) return std::nullopt;
  const bool still_behind =
      swarm_epoch > static_cast<uint64_t>(local_epoch) + allowed_lag;
  if (ok && !still_behind) {
    reload_at_ = 0;
    return std::nullopt;
  }
  reload_at_ = swarm_epoch + 1;
  return static_cast<int64_t>(swarm_epoch);
}

}  // namespace internal
}  // namespace hivemind
