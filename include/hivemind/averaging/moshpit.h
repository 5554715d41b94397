// Moshpit averaging (Ryabinin et al., 2021): peers meet in small groups whose keys
// are "group bits"; after each round every member moves to new bits drawn from the
// round's group id, so that the members of one group scatter to different groups
// next round. On a grid of g^d peers with groups of g, d rounds give every peer the
// exact global mean, with no all-to-all step.
#ifndef HIVEMIND_AVERAGING_MOSHPIT_H_
#define HIVEMIND_AVERAGING_MOSHPIT_H_

#include <string>

#include "absl/status/statusor.h"
#include "hivemind/averaging/group.h"
#include "hivemind/export.h"

namespace hivemind {

// The group bits ("0"/"1" characters) member `my_index` of `group` uses next round:
// every member draws a distinct bucket in [0, 2^bits_per_round) from a generator
// seeded with the group id (so all members agree without talking), appends the
// bucket's bits to `bits` and keeps the last bits.size() characters.
//
// Returns kInvalidArgument if the group has more members than buckets (they could
// not scatter), if `bits` holds characters other than '0' and '1', or if
// bits_per_round is not in [1, 16].
HIVEMIND_EXPORT absl::StatusOr<std::string> NextGroupBits(const GroupInfo& group,
                                                          int my_index,
                                                          const std::string& bits,
                                                          int bits_per_round);

}  // namespace hivemind

#endif  // HIVEMIND_AVERAGING_MOSHPIT_H_
