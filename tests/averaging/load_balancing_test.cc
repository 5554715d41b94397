#include "hivemind/averaging/load_balancing.h"

#include <numeric>

#include "gtest/gtest.h"

namespace hivemind {
namespace {

std::vector<GroupMember> Members(std::vector<double> bandwidths,
                                 std::vector<MemberMode> modes = {}) {
  std::vector<GroupMember> members(bandwidths.size());
  for (size_t i = 0; i < members.size(); ++i) {
    members[i].bandwidth = bandwidths[i];
    if (!modes.empty()) members[i].mode = modes[i];
  }
  return members;
}

uint64_t Sum(const std::vector<uint64_t>& v) {
  return std::accumulate(v.begin(), v.end(), uint64_t{0});
}

TEST(SplitIntoSpans, EqualWhenBandwidthIsUnknown) {
  const auto spans = SplitIntoSpans(1000, Members({0, 0, 0, 0}));
  EXPECT_EQ(spans, (std::vector<uint64_t>{250, 250, 250, 250}));
  const auto odd = SplitIntoSpans(1003, Members({0, 0, 0}));
  EXPECT_EQ(Sum(odd), 1003u);
  for (uint64_t s : odd) EXPECT_NEAR(static_cast<double>(s), 1003 / 3.0, 1.0);
}

TEST(SplitIntoSpans, ClientsReduceNothing) {
  const auto spans = SplitIntoSpans(
      900,
      Members({0, 0, 0}, {MemberMode::kNode, MemberMode::kClient, MemberMode::kNode}));
  EXPECT_EQ(spans, (std::vector<uint64_t>{450, 0, 450}));
  EXPECT_EQ(SplitIntoSpans(10, Members({1}, {MemberMode::kClient})),
            (std::vector<uint64_t>{0}));
}

TEST(SplitIntoSpans, FasterPeersReduceMoreAndTheSlowestTimeIsMinimal) {
  const std::vector<double> bw = {100, 100, 100, 10};
  const auto spans = SplitIntoSpans(1000000, Members(bw));
  EXPECT_EQ(Sum(spans), 1000000u);
  EXPECT_GT(spans[0], spans[3]);
  // The time (1 + (n-2) w) / bw of the busiest peer is no worse than the equal split.
  auto worst = [&](const std::vector<double>& w) {
    double t = 0;
    for (size_t i = 0; i < bw.size(); ++i) t = std::max(t, (1 + 2 * w[i]) / bw[i]);
    return t;
  };
  std::vector<double> w;
  for (uint64_t s : spans) w.push_back(s / 1e6);
  EXPECT_LE(worst(w), worst({0.25, 0.25, 0.25, 0.25}));
  // The slow peer costs 1/bw even with nothing to reduce: the fast ones share the
  // work, and the slow one may reduce nothing at all.
  EXPECT_LE(spans[3], spans[0]);
}

TEST(SplitIntoSpans, TwoPeersSplitByBandwidth) {
  EXPECT_EQ(SplitIntoSpans(300, Members({1, 2})), (std::vector<uint64_t>{100, 200}));
}

TEST(SplitIntoSpans, IsDeterministic) {
  const auto members = Members({3.5, 0, 17, 2, 9});
  EXPECT_EQ(SplitIntoSpans(123457, members), SplitIntoSpans(123457, members));
}

}  // namespace
}  // namespace hivemind
