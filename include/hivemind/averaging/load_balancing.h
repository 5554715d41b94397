// How the flattened vector is split among a group's reducers.
#ifndef HIVEMIND_AVERAGING_LOAD_BALANCING_H_
#define HIVEMIND_AVERAGING_LOAD_BALANCING_H_

#include <cstdint>
#include <vector>

#include "hivemind/averaging/group.h"
#include "hivemind/export.h"

namespace hivemind {

// Returns the number of elements each member reduces, in member order; they sum to
// `total`. Client-mode members get 0. Members with unknown bandwidth (0) count as the
// mean of the known ones (all equal when none is known).
//
// With n members, a reducer holding a fraction w of the vector moves about
// 1 + (n - 2) * w vector-sizes each way, so its time is (1 + (n - 2) w) / bandwidth.
// The split minimizes the slowest member's time (hivemind's load-balancing LP, solved
// in closed form by water-filling); for n <= 2 it is proportional to bandwidth.
// Deterministic: every member computes the same split from the same GroupInfo.
HIVEMIND_EXPORT std::vector<uint64_t> SplitIntoSpans(
    uint64_t total, const std::vector<GroupMember>& members);

}  // namespace hivemind

#endif  // HIVEMIND_AVERAGING_LOAD_BALANCING_H_
