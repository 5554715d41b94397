// Every malformed input gets its named Status, and the destination is untouched.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hivemind/codec/codec.h"
#include "hivemind/codec/factory.h"
#include "tests/codec/test_util.h"
#include "util/bytes.h"

namespace hivemind {
namespace {

using testing_util::EncodeOrDie;
using testing_util::MakeCodec;
using testing_util::RandomNormal;

const char* const kSpecs[] = {"none",       "fp16",           "bf16",       "scaled_fp16",
                              "uniform8",   "quantile8",      "blockwise8", "blockwise4",
                              "blockwise2", "blockwise4+zstd"};

constexpr float kSentinel = 12345.0f;

// Decodes with both entry points and expects `code`; the destination must keep its
// sentinel values.
void ExpectRejected(const std::string& payload, size_t n, absl::StatusCode code) {
  std::vector<float> out(n, kSentinel);
  EXPECT_EQ(Decode(payload, absl::MakeSpan(out)).code(), code);
  EXPECT_EQ(DecodeAdd(payload, 0.5f, absl::MakeSpan(out)).code(), code);
  for (float v : out) ASSERT_EQ(v, kSentinel);
}

TEST(Encode, RejectsNaNAndInfInEveryCodec) {
  for (const char* spec : kSpecs) {
    auto codec = MakeCodec(spec);
    for (float bad :
         {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
          -std::numeric_limits<float>::infinity()}) {
      std::vector<float> x = RandomNormal(5000, 1);
      x[4321] = bad;
      std::string payload;
      EXPECT_EQ(codec->Encode(x, &payload).code(), absl::StatusCode::kInvalidArgument)
          << spec << " " << bad;
    }
  }
}

TEST(Encode, RejectsAnOutputBufferThatIsTooSmall) {
  auto codec = MakeCodec("blockwise8");
  const std::vector<float> x = RandomNormal(100, 1);
  std::vector<char> out(codec->MaxEncodedSize(x.size()) - 1);
  EXPECT_EQ(codec->Encode(x, absl::MakeSpan(out)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Decode, RejectsEveryTruncationAndExtension) {
  for (const char* spec : kSpecs) {
    SCOPED_TRACE(spec);
    const std::vector<float> x = RandomNormal(300, 2);
    const std::string payload = EncodeOrDie(*MakeCodec(spec), x);
    for (size_t len = 0; len < payload.size(); ++len) {
      ExpectRejected(payload.substr(0, len), x.size(), absl::StatusCode::kDataLoss);
    }
    ExpectRejected(payload + '\0', x.size(), absl::StatusCode::kDataLoss);
  }
}

TEST(Decode, RejectsADestinationOfTheWrongSize) {
  const std::string payload = EncodeOrDie(*MakeCodec("fp16"), RandomNormal(10, 3));
  ExpectRejected(payload, 9, absl::StatusCode::kInvalidArgument);
  ExpectRejected(payload, 11, absl::StatusCode::kInvalidArgument);
}

TEST(Decode, RejectsANonFiniteWeight) {
  const std::string payload = EncodeOrDie(*MakeCodec("none"), RandomNormal(10, 3));
  std::vector<float> acc(10, kSentinel);
  EXPECT_EQ(DecodeAdd(payload, std::nanf(""), absl::MakeSpan(acc)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeAdd(payload, INFINITY, absl::MakeSpan(acc)).code(),
            absl::StatusCode::kInvalidArgument);
  for (float v : acc) ASSERT_EQ(v, kSentinel);
}

class HeaderCorruption : public ::testing::Test {
 protected:
  // A valid blockwise4 payload of 100 elements and a raw one, to corrupt.
  std::string blockwise_ =
      EncodeOrDie(*MakeCodec("blockwise4:block=64"), RandomNormal(100, 4));
  std::string raw_ = EncodeOrDie(*MakeCodec("none"), RandomNormal(100, 4));
};

TEST_F(HeaderCorruption, UnknownCodecId) {
  for (uint8_t id : {9, 100, 255}) {
    std::string p = raw_;
    p[0] = static_cast<char>(id);
    ExpectRejected(p, 100, absl::StatusCode::kDataLoss);
  }
}

TEST_F(HeaderCorruption, ReservedBits) {
  for (int byte : {1, 2, 3}) {
    std::string p = raw_;
    p[byte] = static_cast<char>(byte == 1 ? 0x02 : 0x01);
    ExpectRejected(p, 100, absl::StatusCode::kDataLoss);
  }
}

TEST_F(HeaderCorruption, BadBlockSizes) {
  for (uint32_t block : {0u, 7u, 12u, (1u << 20) + 8}) {
    std::string p = blockwise_;
    internal::StoreLE<uint32_t>(&p[4], block);
    ExpectRejected(p, 100, absl::StatusCode::kDataLoss);
  }
  std::string p = raw_;
  internal::StoreLE<uint32_t>(&p[4], 64);  // raw payloads carry no block size
  ExpectRejected(p, 100, absl::StatusCode::kDataLoss);
}

TEST_F(HeaderCorruption, HugeOrMismatchedCount) {
  std::string p = raw_;
  internal::StoreLE<uint64_t>(&p[8], kMaxPayloadElements + 1);
  ExpectRejected(p, 100, absl::StatusCode::kDataLoss);
  // A count that fits the limit but not the body: the destination size check fires
  // first (the caller asked for 100 elements).
  internal::StoreLE<uint64_t>(&p[8], 101);
  ExpectRejected(p, 100, absl::StatusCode::kInvalidArgument);
  ExpectRejected(p, 101, absl::StatusCode::kDataLoss);
}

TEST(BodyCorruption, NonFiniteValuesAreRejected) {
  const std::vector<float> x = RandomNormal(100, 5);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  {  // raw float NaN
    std::string p = EncodeOrDie(*MakeCodec("none"), x);
    internal::StoreLE<float>(&p[kPayloadHeaderSize + 4 * 50], nan);
    ExpectRejected(p, x.size(), absl::StatusCode::kDataLoss);
  }
  for (const char* spec : {"fp16", "bf16"}) {  // Inf code
    std::string p = EncodeOrDie(*MakeCodec(spec), x);
    const uint16_t inf = std::string(spec) == "fp16" ? 0x7c00 : 0x7f80;
    internal::StoreLE<uint16_t>(&p[kPayloadHeaderSize + 2 * 99], inf);
    ExpectRejected(p, x.size(), absl::StatusCode::kDataLoss);
  }
  for (const char* spec : {"blockwise8", "scaled_fp16", "uniform8", "quantile8"}) {
    std::string p = EncodeOrDie(*MakeCodec(spec), x);  // first float of the body
    internal::StoreLE<float>(&p[kPayloadHeaderSize], nan);
    ExpectRejected(p, x.size(), absl::StatusCode::kDataLoss);
  }
  {  // negative block scale
    std::string p = EncodeOrDie(*MakeCodec("blockwise2"), x);
    internal::StoreLE<float>(&p[kPayloadHeaderSize], -1.0f);
    ExpectRejected(p, x.size(), absl::StatusCode::kDataLoss);
  }
  {  // scaled fp16: a normalized code above 1, and a mean + scale that overflow
    std::string p = EncodeOrDie(*MakeCodec("scaled_fp16"), x);
    internal::StoreLE<uint16_t>(&p[kPayloadHeaderSize + 8 + 2 * 7], 0x4000);  // 2.0
    ExpectRejected(p, x.size(), absl::StatusCode::kDataLoss);
    p = EncodeOrDie(*MakeCodec("scaled_fp16"), x);
    internal::StoreLE<float>(&p[kPayloadHeaderSize], 3e38f);
    internal::StoreLE<float>(&p[kPayloadHeaderSize + 4], 3e38f);
    ExpectRejected(p, x.size(), absl::StatusCode::kDataLoss);
  }
}

TEST(BodyCorruption, ZstdFramesAreChecked) {
  const std::vector<float> x = RandomNormal(1000, 6);
  const std::string good = EncodeOrDie(*MakeCodec("blockwise8+zstd"), x);
  // Garbage instead of a zstd frame.
  std::string p = good;
  for (size_t i = kPayloadHeaderSize; i < p.size(); ++i) p[i] = static_cast<char>(i);
  ExpectRejected(p, x.size(), absl::StatusCode::kDataLoss);
  // Trailing bytes after the frame.
  ExpectRejected(good + "xyz", x.size(), absl::StatusCode::kDataLoss);
  // A valid frame of the wrong content size: a 999-element body under a
  // 1000-element header.
  std::vector<float> shorter(x.begin(), x.end() - 1);
  std::string other = EncodeOrDie(*MakeCodec("blockwise8:block=64+zstd"), shorter);
  std::string mixed =
      good.substr(0, kPayloadHeaderSize) + other.substr(kPayloadHeaderSize);
  ExpectRejected(mixed, x.size(), absl::StatusCode::kDataLoss);
}

TEST(BodyCorruption, RandomBitFlipsNeverCrash) {
  std::mt19937 rng(11);
  for (const char* spec : kSpecs) {
    const std::vector<float> x = RandomNormal(257, 7);
    const std::string good = EncodeOrDie(*MakeCodec(spec), x);
    for (int trial = 0; trial < 300; ++trial) {
      std::string p = good;
      const size_t at = rng() % p.size();
      p[at] = static_cast<char>(p[at] ^ (1 << (rng() % 8)));
      std::vector<float> out(x.size(), kSentinel);
      const absl::Status s = Decode(p, absl::MakeSpan(out));
      if (s.ok()) {
        for (float v : out) ASSERT_TRUE(std::isfinite(v)) << spec;
      } else {
        ASSERT_TRUE(s.code() == absl::StatusCode::kDataLoss ||
                    s.code() == absl::StatusCode::kInvalidArgument)
            << s;
        for (float v : out) ASSERT_EQ(v, kSentinel);
      }
    }
  }
}

}  // namespace
}  // namespace hivemind
