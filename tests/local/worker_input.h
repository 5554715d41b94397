// What the local-reduction tests share between the test and its worker processes:
// the workers' deterministic inputs and the swarm's averager options.
#ifndef HIVEMIND_TESTS_LOCAL_WORKER_INPUT_H_
#define HIVEMIND_TESTS_LOCAL_WORKER_INPUT_H_

#include <cmath>
#include <cstddef>
#include <string>

#include "absl/time/time.h"
#include "hivemind/averaging/averager.h"

namespace hivemind {
namespace testing_util {

// Worker `seed`'s value at index k.
inline float WorkerInput(int seed, size_t k) {
  return std::sin(0.001f * static_cast<float>(k) + static_cast<float>(seed)) *
         (1.0f + 0.25f * static_cast<float>(seed));
}

inline AveragerOptions SwarmOptions(const std::string& prefix, int target) {
  AveragerOptions options;
  options.prefix = prefix;
  options.target_group_size = target;
  options.min_group_size = 2;
  options.matchmaking_time = absl::Seconds(8);  // generous: CI runs tests side by side
  options.allreduce_timeout = absl::Seconds(20);
  return options;
}

}  // namespace testing_util
}  // namespace hivemind

#endif  // HIVEMIND_TESTS_LOCAL_WORKER_INPUT_H_
