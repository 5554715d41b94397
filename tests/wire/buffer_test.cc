#include "hivemind/wire/buffer.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "util/bytes.h"

namespace hivemind {
namespace wire {
namespace {

using internal::BitsToFloat;

constexpr uint32_t kNoLimit = std::numeric_limits<uint32_t>::max();

bool Contains(const absl::Status& status, absl::string_view text) {
  return status.message().find(text) != absl::string_view::npos;
}

// One of every field, in the order ReadSample reads them.
std::string WriteSample() {
  Writer w;
  w.PutU8(0xab);
  w.PutU16(0xbeef);
  w.PutU32(0xdeadbeef);
  w.PutU64(0x0123456789abcdefu);
  w.PutF32(-1.5f);
  w.PutBytes("peer-id");
  w.PutRaw("raw");
  w.PutBytes("");
  return w.Release();
}

// Reads WriteSample's fields; stops at the first error, returning it.
absl::Status ReadSample(Reader* r) {
  uint8_t u8;
  uint16_t u16;
  uint32_t u32;
  uint64_t u64;
  float f32;
  absl::string_view bytes, raw, empty;
  absl::Status s;
  if (!(s = r->ReadU8(&u8)).ok()) return s;
  if (!(s = r->ReadU16(&u16)).ok()) return s;
  if (!(s = r->ReadU32(&u32)).ok()) return s;
  if (!(s = r->ReadU64(&u64)).ok()) return s;
  if (!(s = r->ReadF32(&f32)).ok()) return s;
  if (!(s = r->ReadBytes(&bytes, 64)).ok()) return s;
  if (!(s = r->ReadRaw(3, &raw)).ok()) return s;
  if (!(s = r->ReadBytes(&empty, 64)).ok()) return s;
  EXPECT_EQ(u8, 0xab);
  EXPECT_EQ(u16, 0xbeef);
  EXPECT_EQ(u32, 0xdeadbeefu);
  EXPECT_EQ(u64, 0x0123456789abcdefu);
  EXPECT_EQ(f32, -1.5f);
  EXPECT_EQ(bytes, "peer-id");
  EXPECT_EQ(raw, "raw");
  EXPECT_TRUE(empty.empty());
  return r->ExpectEnd();
}

TEST(Buffer, RoundTripsEveryField) {
  const std::string data = WriteSample();
  EXPECT_EQ(data.size(), 1u + 2 + 4 + 8 + 4 + (4 + 7) + 3 + 4);
  Reader r(data);
  EXPECT_TRUE(ReadSample(&r).ok());
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_EQ(r.position(), data.size());
}

TEST(Buffer, WritesLittleEndian) {
  Writer w;
  w.PutU16(0x0102);
  w.PutU32(0x03040506);
  w.PutU64(0x0708090a0b0c0d0eu);
  w.PutF32(1.0f);  // 0x3f800000
  w.PutBytes("z");
  EXPECT_EQ(w.Release(), std::string("\x02\x01"
                                     "\x06\x05\x04\x03"
                                     "\x0e\x0d\x0c\x0b\x0a\x09\x08\x07"
                                     "\x00\x00\x80\x3f"
                                     "\x01\x00\x00\x00z",
                                     2 + 4 + 8 + 4 + 5));
}

TEST(Buffer, RoundTripsFloatEdgeValues) {
  const float values[] = {0.0f,
                          -0.0f,
                          std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::lowest()};
  for (float value : values) {
    Writer w;
    w.PutF32(value);
    const std::string data = w.Release();
    Reader r(data);
    float out = 42.0f;
    ASSERT_TRUE(r.ReadF32(&out).ok()) << value;
    EXPECT_EQ(internal::FloatBits(out), internal::FloatBits(value));
  }
}

TEST(Buffer, WriterAppendsToCallerString) {
  std::string dst = "prefix";
  {
    Writer w(&dst);
    w.PutU8('!');
    w.PutRaw("tail");
    EXPECT_EQ(w.size(), 11u);
  }
  EXPECT_EQ(dst, "prefix!tail");
}

TEST(Buffer, ReleaseEmptiesWriterForReuse) {
  Writer w;
  w.PutRaw("first");
  EXPECT_EQ(w.Release(), "first");
  EXPECT_EQ(w.size(), 0u);
  w.PutRaw("second");
  EXPECT_EQ(w.Release(), "second");
}

// Every strict prefix of a valid buffer must fail with kDataLoss at some read, and
// the failing read must consume nothing.
TEST(Buffer, ReadsPastEndFailCleanlyAtEveryPrefix) {
  const std::string data = WriteSample();
  for (size_t n = 0; n < data.size(); ++n) {
    SCOPED_TRACE(n);
    Reader r(absl::string_view(data).substr(0, n));
    absl::Status status = ReadSample(&r);
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
    EXPECT_LE(r.position(), n);
    EXPECT_TRUE(Contains(status, "remain")) << status;
  }
}

TEST(Buffer, FailedReadConsumesNothingAndKeepsOutput) {
  Reader r(absl::string_view("\x01\x02\x03", 3));
  uint32_t out = 7;
  absl::Status status = r.ReadU32(&out);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(status.message(), "reading u32 at offset 0: needs 4 bytes, only 3 remain");
  EXPECT_EQ(out, 7u);
  EXPECT_EQ(r.remaining(), 3u);
  uint16_t u16;
  EXPECT_TRUE(r.ReadU16(&u16).ok());
  EXPECT_EQ(u16, 0x0201);
}

TEST(Buffer, RejectsLengthPrefixLargerThanRemaining) {
  std::string data;
  Writer w(&data);
  w.PutU32(10);
  w.PutRaw("123456789");  // One byte short.
  Reader r(data);
  absl::string_view out = "untouched";
  absl::Status status = r.ReadBytes(&out, kNoLimit);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(status.message(),
            "reading bytes at offset 0: length prefix says 10 bytes, only 9 remain");
  EXPECT_EQ(out, "untouched");
  EXPECT_EQ(r.remaining(), data.size());
}

TEST(Buffer, RejectsLengthPrefixLargerThanMax) {
  Writer w;
  w.PutBytes("12345");
  const std::string data = w.Release();
  Reader r(data);
  absl::string_view out;
  absl::Status status = r.ReadBytes(&out, 4);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status, "over the limit of 4")) << status;
  EXPECT_EQ(r.remaining(), data.size());
  ASSERT_TRUE(r.ReadBytes(&out, 5).ok());
  EXPECT_EQ(out, "12345");
}

// A prefix near 4 GiB must not overflow the bounds arithmetic.
TEST(Buffer, RejectsHugeLengthPrefix) {
  Writer w;
  w.PutU32(UINT32_MAX);
  w.PutRaw("abc");
  const std::string data = w.Release();
  Reader r(data);
  absl::string_view out;
  EXPECT_EQ(r.ReadBytes(&out, kNoLimit).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(r.ReadRaw(std::numeric_limits<size_t>::max(), &out).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(r.remaining(), data.size());
}

TEST(Buffer, ReadRawReturnsViewIntoBuffer) {
  const std::string data = "abcdef";
  Reader r(data);
  absl::string_view out;
  ASSERT_TRUE(r.ReadRaw(0, &out).ok());
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(r.ReadRaw(4, &out).ok());
  EXPECT_EQ(out.data(), data.data());
  EXPECT_EQ(r.ReadRaw(3, &out).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(out, "abcd");
}

TEST(Buffer, RejectsNonFiniteFloats) {
  const uint32_t bad_bits[] = {
      0x7fc00000,  // quiet NaN
      0x7f800001,  // signaling NaN
      0xffc00000,  // negative NaN
      0x7f800000,  // +infinity
      0xff800000,  // -infinity
  };
  for (uint32_t bits : bad_bits) {
    Writer w;
    w.PutU32(bits);
    const std::string data = w.Release();
    Reader r(data);
    float out = 3.0f;
    absl::Status status = r.ReadF32(&out);
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << std::hex << bits;
    EXPECT_TRUE(Contains(status, std::isnan(BitsToFloat(bits)) ? "NaN" : "infinite"))
        << status;
    EXPECT_EQ(out, 3.0f);
    EXPECT_EQ(r.remaining(), 4u);
  }
}

TEST(Buffer, ExpectEndRejectsTrailingBytes) {
  const std::string data = "\x05xyz";
  Reader r(data);
  uint8_t u8;
  ASSERT_TRUE(r.ReadU8(&u8).ok());
  absl::Status status = r.ExpectEnd();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(status.message(), "3 trailing bytes after offset 1 (buffer is 4 bytes)");
  absl::string_view rest;
  ASSERT_TRUE(r.ReadRaw(3, &rest).ok());
  EXPECT_TRUE(r.ExpectEnd().ok());
}

TEST(Buffer, EmptyReaderIsAtEnd) {
  Reader r(absl::string_view{});
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_TRUE(r.ExpectEnd().ok());
  uint8_t u8;
  EXPECT_EQ(r.ReadU8(&u8).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace wire
}  // namespace hivemind
