#include "hivemind/wire/frame.h"

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "util/bytes.h"

namespace hivemind {
namespace wire {
namespace {

using internal::LoadLE;
using internal::StoreLE;

const MessageType kAllTypes[] = {
    MessageType::kError,
    MessageType::kPing,
    MessageType::kPong,
    MessageType::kAllReducePart,
    MessageType::kAllReduceResult,
    MessageType::kJoinRequest,
    MessageType::kJoinResponse,
    MessageType::kGroupAssembled,
    MessageType::kStateRequest,
    MessageType::kStateChunk,
};

// Bodies every round trip is tried with: empty, one byte, binary with NULs, and
// one large enough to cross XXH3's internal block sizes.
std::vector<std::string> SampleBodies() {
  std::string binary("a\0b\xff\x00\x80", 6);
  std::string large(5000, '\0');
  for (size_t i = 0; i < large.size(); ++i) large[i] = static_cast<char>(i * 31 + 7);
  return {"", "x", binary, large};
}

std::string ValidFrame(absl::string_view body = "hello, peer", bool checksum = true) {
  return EncodeFrame(MessageType::kPing, 42, body, checksum);
}

void ExpectRoundTrip(MessageType type, uint64_t id, const std::string& body,
                     bool checksum) {
  SCOPED_TRACE(std::string(MessageTypeName(type)) + " body size " +
               std::to_string(body.size()) + (checksum ? " with" : " without") +
               " checksum");
  const std::string frame = EncodeFrame(type, id, body, checksum);
  ASSERT_EQ(frame.size(), kFrameHeaderSize + body.size());
  absl::StatusOr<FrameView> parsed = ParseFrame(frame);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->header.type, type);
  EXPECT_EQ(parsed->header.request_id, id);
  EXPECT_EQ(parsed->header.body_size, body.size());
  EXPECT_EQ(parsed->header.flags, checksum ? kFlagChecksum : 0);
  EXPECT_EQ(parsed->body, body);
  if (!checksum) {
    EXPECT_EQ(parsed->header.body_checksum, 0u);
  }
}

TEST(Frame, RoundTripsWithChecksum) {
  for (MessageType type : kAllTypes) {
    for (const std::string& body : SampleBodies()) {
      ExpectRoundTrip(type, 0x0123456789abcdefu, body, /*checksum=*/true);
    }
  }
}

TEST(Frame, RoundTripsWithoutChecksum) {
  for (MessageType type : kAllTypes) {
    for (const std::string& body : SampleBodies()) {
      ExpectRoundTrip(type, UINT64_MAX, body, /*checksum=*/false);
    }
  }
}

TEST(Frame, RoundTripsEmptyBody) {
  for (bool checksum : {false, true}) {
    const std::string frame = EncodeFrame(MessageType::kPong, 0, "", checksum);
    ASSERT_EQ(frame.size(), kFrameHeaderSize);
    absl::StatusOr<FrameView> parsed = ParseFrame(frame);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_TRUE(parsed->body.empty());
    EXPECT_EQ(parsed->header.body_size, 0u);
    // Two-part form with a default (null) view as the empty body.
    EXPECT_TRUE(ParseFrame(frame, absl::string_view()).ok());
  }
}

// Pins the byte layout of docs/wire_format.md so that an accidental change to the
// encoder cannot go unnoticed by a test that only round-trips.
TEST(Frame, HeaderLayoutMatchesSpec) {
  const std::string frame =
      EncodeFrame(MessageType::kAllReduceResult, 0x1122334455667788u, "abc", false);
  const unsigned char expected[] = {
      'H',  'V',  'M',  'D',                           // magic
      0x01,                                            // version
      0x11,                                            // type
      0x00, 0x00,                                      // flags
      0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,  // request_id
      0x03, 0x00, 0x00, 0x00,                          // body_size
      0x00, 0x00, 0x00, 0x00,                          // reserved
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // body_checksum
      'a',  'b',  'c',                                 // body
  };
  ASSERT_EQ(frame.size(), sizeof(expected));
  EXPECT_EQ(frame,
            std::string(reinterpret_cast<const char*>(expected), sizeof(expected)));
}

TEST(Frame, ChecksumFieldIsXxh3OfBody) {
  const std::string frame = ValidFrame("abc", /*checksum=*/true);
  EXPECT_EQ(LoadLE<uint16_t>(&frame[6]), kFlagChecksum);
  // XXH3_64bits("abc"), the reference value from the xxHash test vectors.
  EXPECT_EQ(LoadLE<uint64_t>(&frame[24]), 0x78af5f94892f3950u);
}

TEST(Frame, TwoPartFormMatchesWholeForm) {
  const std::string body = SampleBodies().back();
  char header[kFrameHeaderSize];
  EncodeFrameHeader(MessageType::kStateChunk, 7, body, /*checksum=*/true, header);
  const std::string whole = EncodeFrame(MessageType::kStateChunk, 7, body, true);
  EXPECT_EQ(absl::string_view(header, kFrameHeaderSize),
            absl::string_view(whole).substr(0, kFrameHeaderSize));

  absl::StatusOr<FrameView> parsed =
      ParseFrame(absl::string_view(header, kFrameHeaderSize), body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->header.type, MessageType::kStateChunk);
  EXPECT_EQ(parsed->body.data(), body.data());  // A view, not a copy.
}

TEST(Frame, BodyViewPointsIntoCallerBuffer) {
  const std::string frame = ValidFrame();
  absl::StatusOr<FrameView> parsed = ParseFrame(frame);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->body.data(), frame.data() + kFrameHeaderSize);
}

TEST(Frame, ParseFrameHeaderReturnsFieldsWithoutBody) {
  const std::string frame = ValidFrame("12345");
  absl::StatusOr<FrameHeader> header =
      ParseFrameHeader(absl::string_view(frame).substr(0, kFrameHeaderSize));
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->type, MessageType::kPing);
  EXPECT_EQ(header->request_id, 42u);
  EXPECT_EQ(header->body_size, 5u);
  EXPECT_EQ(header->flags, kFlagChecksum);
}

TEST(Frame, RejectsTruncatedHeader) {
  const std::string frame = ValidFrame("");
  for (size_t n = 0; n < kFrameHeaderSize; ++n) {
    SCOPED_TRACE(n);
    absl::string_view prefix = absl::string_view(frame).substr(0, n);
    EXPECT_EQ(ParseFrameHeader(prefix).status().code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(ParseFrame(prefix).status().code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(ParseFrame(prefix, "").status().code(), absl::StatusCode::kDataLoss);
  }
}

TEST(Frame, RejectsOversizedHeader) {
  const std::string frame = ValidFrame("x");
  absl::Status status = ParseFrameHeader(frame).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("33 bytes, expected 32"), absl::string_view::npos)
      << status;
}

TEST(Frame, RejectsBadMagic) {
  for (size_t i = 0; i < 4; ++i) {
    std::string frame = ValidFrame();
    frame[i] ^= 0x20;  // 'H' -> 'h' and so on.
    absl::Status status = ParseFrame(frame).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
    EXPECT_NE(status.message().find("magic"), absl::string_view::npos) << status;
  }
}

TEST(Frame, RejectsVersionTwo) {
  std::string frame = ValidFrame();
  frame[4] = 2;
  absl::Status status = ParseFrame(frame).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(status.message().find("version 2"), absl::string_view::npos) << status;
  EXPECT_NE(status.message().find("version 1"), absl::string_view::npos) << status;
}

TEST(Frame, RejectsEveryOtherVersion) {
  for (int version = 0; version < 256; ++version) {
    if (version == kWireVersion) continue;
    std::string frame = ValidFrame();
    frame[4] = static_cast<char>(version);
    EXPECT_EQ(ParseFrame(frame).status().code(), absl::StatusCode::kUnimplemented)
        << version;
  }
}

TEST(Frame, RejectsUnknownType) {
  int known = 0;
  for (int type = 0; type < 256; ++type) {
    std::string frame = ValidFrame();
    frame[5] = static_cast<char>(type);
    absl::Status status = ParseFrame(frame).status();
    if (IsKnownMessageType(static_cast<uint8_t>(type))) {
      ++known;
      EXPECT_TRUE(status.ok()) << type << ": " << status;
    } else {
      EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << type;
      EXPECT_NE(status.message().find(std::to_string(type)), absl::string_view::npos);
    }
  }
  EXPECT_EQ(known, 10);
}

TEST(Frame, RejectsEachReservedFlagBit) {
  for (int bit = 1; bit < 16; ++bit) {
    std::string frame = ValidFrame();
    StoreLE<uint16_t>(&frame[6], static_cast<uint16_t>(kFlagChecksum | (1u << bit)));
    EXPECT_EQ(ParseFrame(frame).status().code(), absl::StatusCode::kDataLoss) << bit;
  }
}

TEST(Frame, RejectsEachReservedFieldByte) {
  for (size_t offset = 20; offset < 24; ++offset) {
    std::string frame = ValidFrame();
    frame[offset] = 1;
    absl::Status status = ParseFrame(frame).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << offset;
    EXPECT_NE(status.message().find("reserved"), absl::string_view::npos) << status;
  }
}

TEST(Frame, RejectsChecksumFieldWithoutFlag) {
  std::string frame = ValidFrame("abc", /*checksum=*/false);
  frame[24] = 1;
  EXPECT_EQ(ParseFrame(frame).status().code(), absl::StatusCode::kDataLoss);
}

TEST(Frame, RejectsBodyOneByteShort) {
  for (bool checksum : {false, true}) {
    const std::string frame =
        EncodeFrame(MessageType::kPing, 1, "0123456789AB", checksum);
    absl::string_view whole = absl::string_view(frame).substr(0, frame.size() - 1);
    absl::Status status = ParseFrame(whole).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(status.message(), "frame body is 11 bytes, header says 12");
    absl::string_view header = whole.substr(0, kFrameHeaderSize);
    EXPECT_EQ(ParseFrame(header, whole.substr(kFrameHeaderSize)).status().code(),
              absl::StatusCode::kDataLoss);
  }
}

TEST(Frame, RejectsBodyOneByteLong) {
  for (bool checksum : {false, true}) {
    const std::string frame =
        EncodeFrame(MessageType::kPing, 1, "0123456789AB", checksum) + "!";
    absl::Status status = ParseFrame(frame).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(status.message(), "frame body is 13 bytes, header says 12");
    absl::string_view whole(frame);
    EXPECT_EQ(
        ParseFrame(whole.substr(0, kFrameHeaderSize), whole.substr(kFrameHeaderSize))
            .status()
            .code(),
        absl::StatusCode::kDataLoss);
  }
}

TEST(Frame, RejectsBodyOverLimit) {
  const FrameLimits limits{/*max_body_size=*/10};
  const std::string frame = ValidFrame("01234567890");  // 11 bytes.
  absl::Status status = ParseFrame(frame, limits).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("11"), absl::string_view::npos) << status;
  EXPECT_NE(status.message().find("10"), absl::string_view::npos) << status;
  EXPECT_TRUE(ParseFrame(ValidFrame("0123456789"), limits).ok());
}

// A header may claim up to 4 GiB; the limit must reject it from the header alone,
// before anything looks for (or allocates) the body.
TEST(Frame, RejectsHugeDeclaredBodyFromHeaderAlone) {
  std::string header = ValidFrame("", /*checksum=*/false);
  StoreLE<uint32_t>(&header[16], UINT32_MAX);
  EXPECT_EQ(ParseFrameHeader(header).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ParseFrame(header).status().code(), absl::StatusCode::kDataLoss);
  const FrameLimits unlimited{/*max_body_size=*/UINT32_MAX};
  absl::StatusOr<FrameHeader> parsed = ParseFrameHeader(header, unlimited);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->body_size, UINT32_MAX);
  EXPECT_EQ(ParseFrame(header, unlimited).status().code(), absl::StatusCode::kDataLoss);
}

TEST(Frame, DetectsEveryFlippedBodyBitWithChecksum) {
  const std::string body = "sixteen byte bod";
  for (size_t bit = 0; bit < body.size() * 8; ++bit) {
    std::string frame = ValidFrame(body, /*checksum=*/true);
    frame[kFrameHeaderSize + bit / 8] ^= static_cast<char>(1 << (bit % 8));
    absl::Status status = ParseFrame(frame).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << bit;
    EXPECT_NE(status.message().find("checksum"), absl::string_view::npos) << status;
  }
}

TEST(Frame, AcceptsFlippedBodyBitWithoutChecksum) {
  std::string frame = ValidFrame("sixteen byte bod", /*checksum=*/false);
  frame[kFrameHeaderSize + 4] ^= 0x20;  // One bit: 'e' -> 'E'.
  absl::StatusOr<FrameView> parsed = ParseFrame(frame);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->body, "sixtEen byte bod");
}

TEST(Frame, DetectsCorruptedChecksumField) {
  std::string frame = ValidFrame("abc", /*checksum=*/true);
  frame[31] ^= 0x01;
  EXPECT_EQ(ParseFrame(frame).status().code(), absl::StatusCode::kDataLoss);
}

TEST(Frame, IsKnownMessageTypeMatchesEnumerators) {
  std::set<int> expected;
  for (MessageType type : kAllTypes) expected.insert(static_cast<int>(type));
  for (int value = 0; value < 256; ++value) {
    EXPECT_EQ(IsKnownMessageType(static_cast<uint8_t>(value)), expected.count(value) == 1)
        << value;
  }
}

// The numbers are part of the protocol; changing one breaks every deployed peer.
TEST(Frame, MessageTypeValuesAreFixed) {
  EXPECT_EQ(static_cast<int>(MessageType::kError), 1);
  EXPECT_EQ(static_cast<int>(MessageType::kPing), 2);
  EXPECT_EQ(static_cast<int>(MessageType::kPong), 3);
  EXPECT_EQ(static_cast<int>(MessageType::kAllReducePart), 16);
  EXPECT_EQ(static_cast<int>(MessageType::kAllReduceResult), 17);
  EXPECT_EQ(static_cast<int>(MessageType::kJoinRequest), 32);
  EXPECT_EQ(static_cast<int>(MessageType::kJoinResponse), 33);
  EXPECT_EQ(static_cast<int>(MessageType::kGroupAssembled), 34);
  EXPECT_EQ(static_cast<int>(MessageType::kStateRequest), 48);
  EXPECT_EQ(static_cast<int>(MessageType::kStateChunk), 49);
}

TEST(Frame, MessageTypeNamesAreDistinct) {
  std::set<std::string> names;
  for (MessageType type : kAllTypes) {
    const std::string name(MessageTypeName(type));
    EXPECT_EQ(name[0], 'k') << name;
    EXPECT_TRUE(names.insert(name).second) << name;
  }
  EXPECT_EQ(MessageTypeName(MessageType::kPing), "kPing");
  EXPECT_EQ(MessageTypeName(static_cast<MessageType>(200)), "unknown");
}

// Checked even with NDEBUG: a wrapped u32 size would desynchronize the stream. The
// view's bytes are never read because the size check comes first.
TEST(FrameDeathTest, EncodeAbortsOnBodyOver4GiB) {
  static const char kByte = 0;
  const absl::string_view huge(&kByte, size_t{1} << 32);
  char header[kFrameHeaderSize];
  EXPECT_DEATH(EncodeFrameHeader(MessageType::kPing, 0, huge, false, header),
               "exceeds the wire maximum");
}

}  // namespace
}  // namespace wire
}  // namespace hivemind
