// Deterministic states for the state sharing tests, their donor process and the
// state download benchmark.
#ifndef HIVEMIND_TESTS_AVERAGING_STATE_FIXTURE_H_
#define HIVEMIND_TESTS_AVERAGING_STATE_FIXTURE_H_

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "hivemind/averaging/state_sharing.h"

namespace hivemind {
namespace testing_state {

// `numel` values and a few KiB of optimizer bytes, all derived from `seed`; includes
// a NaN with a payload and a negative zero, which must survive bit for bit.
inline PeerState MakeState(size_t numel, int64_t epoch, uint64_t seed) {
  PeerState state;
  state.epoch = epoch;
  state.metadata = absl::StrCat("{\"seed\": ", seed, ", \"epoch\": ", epoch, "}");
  state.values.resize(numel);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < numel; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state.values[i] = static_cast<float>(static_cast<int64_t>(x >> 40) - (1 << 23)) /
                      static_cast<float>(1 << 20);
  }
  if (numel >= 2) {
    const uint32_t nan_bits = 0x7FC01234u;
    std::memcpy(&state.values[0], &nan_bits, sizeof(nan_bits));
    state.values[1] = -0.0f;
  }
  state.extra.resize(4096 + seed % 1000);
  for (size_t i = 0; i < state.extra.size(); ++i) {
    state.extra[i] = static_cast<char>((i * 131 + seed) & 0xFF);
  }
  return state;
}

// True if both states hold the same bits.
inline bool BitIdentical(const PeerState& a, const PeerState& b) {
  return a.epoch == b.epoch && a.metadata == b.metadata && a.extra == b.extra &&
         a.values.size() == b.values.size() &&
         (a.values.empty() || std::memcmp(a.values.data(), b.values.data(),
                                          a.values.size() * sizeof(float)) == 0);
}

}  // namespace testing_state
}  // namespace hivemind

#endif  // HIVEMIND_TESTS_AVERAGING_STATE_FIXTURE_H_
