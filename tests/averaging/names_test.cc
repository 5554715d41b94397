#include "gtest/gtest.h"
#include "hivemind/averaging/allreduce.h"
#include "hivemind/averaging/group.h"

namespace hivemind {
namespace {

TEST(Names, MemberModesRoundTrip) {
  for (MemberMode m : {MemberMode::kNode, MemberMode::kClient, MemberMode::kAuxiliary}) {
    absl::StatusOr<MemberMode> parsed = ParseMemberMode(MemberModeName(m));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, m);
  }
  EXPECT_EQ(ParseMemberMode("auxiliary").value(), MemberMode::kAuxiliary);
}

TEST(Names, UnknownModeIsAnErrorNamingTheChoices) {
  absl::StatusOr<MemberMode> parsed = ParseMemberMode("Client");
  ASSERT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("node, client or aux"),
            absl::string_view::npos);
  EXPECT_FALSE(ParseMemberMode("").ok());
}

TEST(Names, AggregationsRoundTrip) {
  for (Aggregation a : {Aggregation::kMean, Aggregation::kCenteredClip}) {
    absl::StatusOr<Aggregation> parsed = ParseAggregation(AggregationName(a));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, a);
  }
}

TEST(Names, UnknownAggregationIsAnError) {
  absl::StatusOr<Aggregation> parsed = ParseAggregation("median");
  ASSERT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("\"median\""), absl::string_view::npos);
}

}  // namespace
}  // namespace hivemind
