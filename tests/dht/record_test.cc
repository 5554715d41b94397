#include "dht/record.h"

#include "gtest/gtest.h"

namespace hivemind {
namespace internal {
namespace {

DhtRecord Sample() {
  return DhtRecord{"subkey", std::string("va\0lue", 6), "writer-id",
                   absl::FromUnixMicros(1000), absl::FromUnixMicros(5000)};
}

TEST(DhtRecord, RoundTrips) {
  auto parsed = ParseDhtRecord(EncodeDhtRecord(Sample()));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->subkey, "subkey");
  EXPECT_EQ(parsed->value, std::string("va\0lue", 6));
  EXPECT_EQ(parsed->writer, "writer-id");
  EXPECT_EQ(parsed->stored_at, absl::FromUnixMicros(1000));
  EXPECT_EQ(parsed->expiration, absl::FromUnixMicros(5000));
}

TEST(DhtRecord, MalformedRecordsAreDataLoss) {
  const std::string good = EncodeDhtRecord(Sample());
  for (size_t len = 0; len < good.size(); ++len) {
    EXPECT_EQ(ParseDhtRecord(good.substr(0, len)).status().code(),
              absl::StatusCode::kDataLoss)
        << len;
  }
  EXPECT_EQ(ParseDhtRecord(good + "x").status().code(), absl::StatusCode::kDataLoss);
  std::string bad_version = good;
  bad_version[0] = 2;
  EXPECT_EQ(ParseDhtRecord(bad_version).status().code(), absl::StatusCode::kDataLoss);
  // A time that does not fit an int64 of microseconds (found by the fuzzer).
  std::string huge = good;
  const size_t expiration_at = 1 + 4 + 6 + 4 + 9 + 8;
  for (size_t i = 0; i < 8; ++i) huge[expiration_at + i] = '\xff';
  EXPECT_EQ(ParseDhtRecord(huge).status().code(), absl::StatusCode::kDataLoss);
  DhtRecord backwards = Sample();
  backwards.expiration = absl::FromUnixMicros(10);
  EXPECT_EQ(ParseDhtRecord(EncodeDhtRecord(backwards)).status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace internal
}  // namespace hivemind
