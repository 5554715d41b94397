#include "hivemind/averaging/moshpit.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include <xxhash.h>

#include "absl/strings/str_cat.h"

namespace hivemind {

absl::StatusOr<std::string> NextGroupBits(const GroupInfo& group, int my_index,
                                          const std::string& bits, int bits_per_round) {
  if (bits_per_round < 1 || bits_per_round > 16) {
    return absl::InvalidArgumentError("bits_per_round must be in [1, 16]");
  }
  const size_t buckets = size_t{1} << bits_per_round;
  if (group.members.size() > buckets || my_index < 0 ||
      static_cast<size_t>(my_index) >= group.members.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a group of ", group.members.size(), " cannot scatter into ",
                     buckets, " buckets (or the index is out of range)"));
  }
  if (bits.find_first_not_of("01") != std::string::npos) {
    return absl::InvalidArgumentError("group bits must be '0' and '1' characters");
  }
  // A permutation of the buckets that every member computes alike; member i takes
  // the i-th bucket of it, so buckets are distinct within the group.
  std::vector<uint32_t> order(buckets);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(XXH3_64bits(group.group_id.data(), group.group_id.size()));
  for (size_t i = buckets - 1; i > 0; --i) {  // Fisher-Yates, portable across libs
    std::swap(order[i], order[rng() % (i + 1)]);
  }
  const uint32_t bucket = order[my_index];
  std::string next = bits;
  for (int b = bits_per_round - 1; b >= 0; --b) next += ((bucket >> b) & 1) ? '1' : '0';
  return next.substr(next.size() - bits.size());
}

}  // namespace hivemind
