#include "averaging/messages.h"

#include <cmath>

#include "gtest/gtest.h"

namespace hivemind {
namespace internal {
namespace {

TEST(AllReduceMessages, PartRoundTrips) {
  std::string body;
  WritePartHeader({"group-1", 3, 1, 7, 2.5f}, &body);
  body += "PAYLOAD";
  PartHeader h;
  absl::string_view payload;
  ASSERT_TRUE(ParsePart(body, &h, &payload).ok());
  EXPECT_EQ(h.group_id, "group-1");
  EXPECT_EQ(h.sender, 3u);
  EXPECT_EQ(h.reducer, 1u);
  EXPECT_EQ(h.part, 7u);
  EXPECT_EQ(h.weight, 2.5f);
  EXPECT_EQ(payload, "PAYLOAD");
  EXPECT_EQ(*PeekGroupId(body), "group-1");
  EXPECT_EQ(h.aggregation, Aggregation::kMean);
  WritePartHeader(
      {"g", 0, 0, 0, 1.0f, PayloadKind::kValues, 0, Aggregation::kCenteredClip}, &body);
  ASSERT_TRUE(ParsePart(body, &h, &payload).ok());
  EXPECT_EQ(h.aggregation, Aggregation::kCenteredClip);
}

TEST(AllReduceMessages, ResultRoundTrips) {
  std::string body;
  WriteResultHeader({"g", 2, 9}, &body);
  body += "xyz";
  ResultHeader h;
  absl::string_view payload;
  ASSERT_TRUE(ParseResult(body, &h, &payload).ok());
  EXPECT_EQ(h.group_id, "g");
  EXPECT_EQ(h.reducer, 2u);
  EXPECT_EQ(h.part, 9u);
  EXPECT_EQ(payload, "xyz");
}

TEST(AllReduceMessages, MalformedBodiesAreDataLoss) {
  std::string body;
  WritePartHeader({"group", 0, 0, 0, 1.0f}, &body);
  PartHeader h;
  absl::string_view payload;
  for (size_t len = 0; len < body.size(); ++len) {
    EXPECT_EQ(ParsePart(body.substr(0, len), &h, &payload).code(),
              absl::StatusCode::kDataLoss)
        << len;
  }
  std::string nan_weight;
  WritePartHeader({"group", 0, 0, 0, 0.0f}, &nan_weight);
  const float nan = std::nanf("");
  // The weight is followed by the kind (1 byte), the reference hash (8 bytes) and
  // the aggregation (1 byte).
  std::memcpy(&nan_weight[nan_weight.size() - 14], &nan, 4);
  EXPECT_EQ(ParsePart(nan_weight, &h, &payload).code(), absl::StatusCode::kDataLoss);
  std::string negative;
  WritePartHeader({"group", 0, 0, 0, -1.0f}, &negative);
  EXPECT_EQ(ParsePart(negative, &h, &payload).code(), absl::StatusCode::kDataLoss);
  std::string bad_kind;
  WritePartHeader({"group", 0, 0, 0, 1.0f}, &bad_kind);
  bad_kind[bad_kind.size() - 10] = 2;
  EXPECT_EQ(ParsePart(bad_kind, &h, &payload).code(), absl::StatusCode::kDataLoss);
  std::string bad_aggregation;
  WritePartHeader({"group", 0, 0, 0, 1.0f}, &bad_aggregation);
  bad_aggregation.back() = 2;
  EXPECT_EQ(ParsePart(bad_aggregation, &h, &payload).code(), absl::StatusCode::kDataLoss);
  std::string long_id;
  WritePartHeader({std::string(65, 'x'), 0, 0, 0, 1.0f}, &long_id);
  EXPECT_EQ(ParsePart(long_id, &h, &payload).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace internal
}  // namespace hivemind
