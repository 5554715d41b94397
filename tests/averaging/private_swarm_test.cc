// A private swarm's all-reduce with an outsider in the group list: the members refuse
// it in both directions, the refusal shows in every report, and the members average
// among themselves. Real endpoints on 127.0.0.1.
#include <vector>

#include "gtest/gtest.h"
#include "hivemind/averaging/allreduce.h"
#include "tests/averaging/allreduce_group.h"

namespace hivemind {
namespace {

constexpr char kSecret[] = "the members' secret, long enough";

TEST(PrivateSwarmAllReduce, AnOutsiderIsRefusedAndTheMembersAverageWithoutIt) {
  constexpr int kMembers = 3;
  constexpr int kOutsider = kMembers;  // the last member of the group list
  constexpr size_t kNumel = 40000;
  std::vector<EndpointOptions> endpoints(kMembers + 1);
  for (int i = 0; i < kMembers; ++i) endpoints[i].swarm_secret = kSecret;
  testing_util::Swarm swarm(std::vector<MemberMode>(kMembers + 1, MemberMode::kNode),
                            endpoints);
  std::vector<std::vector<float>> values(kMembers + 1, std::vector<float>(kNumel));
  for (int i = 0; i <= kMembers; ++i) {
    for (size_t k = 0; k < kNumel; ++k) values[i][k] = static_cast<float>(i * 10 + k % 7);
  }
  const std::vector<std::vector<float>> inputs = values;
  AllReduceOptions options;
  options.sender_timeout = absl::Seconds(2);
  options.timeout = absl::Seconds(20);
  auto reports = swarm.Run(values, std::vector<AllReduceOptions>(kMembers + 1, options));

  // The outsider's report: every member's reducer refused its parts.
  ASSERT_TRUE(reports[kOutsider].ok()) << reports[kOutsider].status();
  for (int j = 0; j < kMembers; ++j) {
    EXPECT_EQ(reports[kOutsider]->spans[j].status.code(),
              absl::StatusCode::kPermissionDenied)
        << reports[kOutsider]->spans[j].status;
  }
  for (int i = 0; i < kMembers; ++i) {
    ASSERT_TRUE(reports[i].ok()) << reports[i].status();
    const AllReduceReport& report = *reports[i];
    // A member did not send to the outsider's reducer: that span stays local.
    EXPECT_EQ(report.spans[kOutsider].status.code(), absl::StatusCode::kPermissionDenied)
        << report.spans[kOutsider].status;
    for (uint64_t k = report.spans[kOutsider].begin; k < report.spans[kOutsider].end;
         ++k) {
      ASSERT_EQ(values[i][k], inputs[i][k]);
    }
    // The members' spans hold the members' mean, without the outsider.
    for (int j = 0; j < kMembers; ++j) {
      EXPECT_TRUE(report.spans[j].status.ok()) << report.spans[j].status;
      for (uint64_t k = report.spans[j].begin; k < report.spans[j].end; ++k) {
        const float mean = (inputs[0][k] + inputs[1][k] + inputs[2][k]) / 3.0f;
        ASSERT_NEAR(values[i][k], mean, 1e-5f) << "member " << i << " element " << k;
      }
    }
    // Its own reducer excluded the outsider, saying why.
    bool excluded = false;
    for (const auto& [who, why] : report.excluded) excluded |= who == kOutsider;
    EXPECT_TRUE(excluded);
    EXPECT_EQ(report.contributors.size(), static_cast<size_t>(kMembers));
  }
  uint64_t refused = 0;
  for (int i = 0; i < kMembers; ++i)
    refused += swarm.peer(i).endpoint->stats().refused_requests;
  EXPECT_GE(refused, static_cast<uint64_t>(kMembers));
}

}  // namespace
}  // namespace hivemind
