// Runs a LocalReducer's swarm step: exceptions become kInternal (none leaves the
// library) and errors get the "swarm step: " prefix the contract promises.
#ifndef HIVEMIND_LOCAL_SWARM_CALL_H_
#define HIVEMIND_LOCAL_SWARM_CALL_H_

#include <exception>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "hivemind/local/local_reducer.h"

namespace hivemind {
namespace internal {

inline absl::Status CallSwarmStep(const SwarmStep& swarm_step, absl::Span<float> average,
                                  float total_weight) {
  absl::Status status;
  try {
    status = swarm_step(average, total_weight);
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat("threw ", e.what()));
  } catch (...) {
    status = absl::InternalError("threw an exception");
  }
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat("swarm step: ", status.message()));
}

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_LOCAL_SWARM_CALL_H_
