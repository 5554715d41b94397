#include "hivemind/wire/frame.h"

#include <xxhash.h>

#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "hivemind/util/logging.h"
#include "util/bytes.h"
#include "util/status_macros.h"

namespace hivemind {
namespace wire {
namespace {

using internal::LoadLE;
using internal::StoreLE;

// Byte offsets of the header fields (docs/wire_format.md, "Frame header").
constexpr size_t kMagicOffset = 0;
constexpr size_t kVersionOffset = 4;
constexpr size_t kTypeOffset = 5;
constexpr size_t kFlagsOffset = 6;
constexpr size_t kRequestIdOffset = 8;
constexpr size_t kBodySizeOffset = 16;
constexpr size_t kReservedOffset = 20;
constexpr size_t kChecksumOffset = 24;
static_assert(kChecksumOffset + sizeof(uint64_t) == kFrameHeaderSize,
              "the header fields must tile the header exactly");

constexpr uint16_t kKnownFlags = kFlagChecksum;

uint64_t BodyChecksum(absl::string_view body) {
  return XXH3_64bits(body.data(), body.size());
}

// A body the u32 size field cannot describe would be sent with a wrapped size and
// desynchronize the stream, so this is checked even in release builds.
void CheckEncodableBodySize(size_t size) {
  if (size > kMaxEncodableBodySize) {
    HIVEMIND_LOG(kError, "wire: frame body of ", size,
                 " bytes exceeds the wire maximum of ", kMaxEncodableBodySize, " bytes");
    std::abort();
  }
}

// Checks the fields that say whether this is a frame we can read at all.
absl::Status CheckMagicAndVersion(const char* p) {
  const uint32_t magic = LoadLE<uint32_t>(p + kMagicOffset);
  if (magic != kFrameMagic) {
    return absl::DataLossError(absl::StrCat("frame magic is 0x", absl::Hex(magic),
                                            ", expected 0x", absl::Hex(kFrameMagic)));
  }
  const uint8_t version = LoadLE<uint8_t>(p + kVersionOffset);
  if (version != kWireVersion) {
    return absl::UnimplementedError(absl::StrCat(
        "frame has wire version ", version, ", this peer speaks version ", kWireVersion));
  }
  return absl::OkStatus();
}

// Reserved bits must be zero so that a later version can give them a meaning that
// an older peer is guaranteed to notice rather than silently ignore.
absl::Status CheckReservedFields(const char* p) {
  const uint16_t flags = LoadLE<uint16_t>(p + kFlagsOffset);
  const uint16_t reserved_flags = flags & static_cast<uint16_t>(~kKnownFlags);
  if (reserved_flags != 0) {
    return absl::DataLossError(absl::StrCat("frame flags are 0x", absl::Hex(flags),
                                            ", reserved bits 0x",
                                            absl::Hex(reserved_flags), " set"));
  }
  const uint32_t reserved = LoadLE<uint32_t>(p + kReservedOffset);
  if (reserved != 0) {
    return absl::DataLossError(
        absl::StrCat("frame reserved field is 0x", absl::Hex(reserved), ", must be 0"));
  }
  const uint64_t checksum = LoadLE<uint64_t>(p + kChecksumOffset);
  if ((flags & kFlagChecksum) == 0 && checksum != 0) {
    return absl::DataLossError(absl::StrCat("frame body checksum is 0x",
                                            absl::Hex(checksum),
                                            " but the checksum flag is not set"));
  }
  return absl::OkStatus();
}

absl::Status CheckBodyMatches(const FrameHeader& header, absl::string_view body) {
  if (body.size() != header.body_size) {
    return absl::DataLossError(absl::StrCat("frame body is ", body.size(),
                                            " bytes, header says ", header.body_size));
  }
  if ((header.flags & kFlagChecksum) != 0) {
    const uint64_t actual = BodyChecksum(body);
    if (actual != header.body_checksum) {
      return absl::DataLossError(absl::StrCat(
          "frame body checksum mismatch: header says 0x", absl::Hex(header.body_checksum),
          ", body of ", body.size(), " bytes hashes to 0x", absl::Hex(actual)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsKnownMessageType(uint8_t value) {
  switch (static_cast<MessageType>(value)) {
    case MessageType::kError:
    case MessageType::kPing:
    case MessageType::kPong:
    case MessageType::kAllReducePart:
    case MessageType::kAllReduceResult:
    case MessageType::kJoinRequest:
    case MessageType::kJoinResponse:
    case MessageType::kGroupAssembled:
    case MessageType::kStateRequest:
    case MessageType::kStateChunk:
      return true;
  }
  return false;
}

absl::string_view MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kError:
      return "kError";
    case MessageType::kPing:
      return "kPing";
    case MessageType::kPong:
      return "kPong";
    case MessageType::kAllReducePart:
      return "kAllReducePart";
    case MessageType::kAllReduceResult:
      return "kAllReduceResult";
    case MessageType::kJoinRequest:
      return "kJoinRequest";
    case MessageType::kJoinResponse:
      return "kJoinResponse";
    case MessageType::kGroupAssembled:
      return "kGroupAssembled";
    case MessageType::kStateRequest:
      return "kStateRequest";
    case MessageType::kStateChunk:
      return "kStateChunk";
  }
  return "unknown";
}

void EncodeFrameHeader(MessageType type, uint64_t request_id, absl::string_view body,
                       bool checksum, char* out) {
  CheckEncodableBodySize(body.size());
  StoreLE<uint32_t>(out + kMagicOffset, kFrameMagic);
  StoreLE<uint8_t>(out + kVersionOffset, kWireVersion);
  StoreLE<uint8_t>(out + kTypeOffset, static_cast<uint8_t>(type));
  StoreLE<uint16_t>(out + kFlagsOffset, checksum ? kFlagChecksum : 0);
  StoreLE<uint64_t>(out + kRequestIdOffset, request_id);
  StoreLE<uint32_t>(out + kBodySizeOffset, static_cast<uint32_t>(body.size()));
  StoreLE<uint32_t>(out + kReservedOffset, 0);
  StoreLE<uint64_t>(out + kChecksumOffset, checksum ? BodyChecksum(body) : 0);
}

std::string EncodeFrame(MessageType type, uint64_t request_id, absl::string_view body,
                        bool checksum) {
  CheckEncodableBodySize(body.size());
  std::string frame(kFrameHeaderSize + body.size(), '\0');
  EncodeFrameHeader(type, request_id, body, checksum, &frame[0]);
  if (!body.empty()) {
    std::memcpy(&frame[kFrameHeaderSize], body.data(), body.size());
  }
  return frame;
}

absl::StatusOr<FrameHeader> ParseFrameHeader(absl::string_view header,
                                             const FrameLimits& limits) {
  if (header.size() != kFrameHeaderSize) {
    return absl::DataLossError(absl::StrCat("frame header is ", header.size(),
                                            " bytes, expected ", kFrameHeaderSize));
  }
  const char* p = header.data();
  HIVEMIND_RETURN_IF_ERROR(CheckMagicAndVersion(p));
  HIVEMIND_RETURN_IF_ERROR(CheckReservedFields(p));
  const uint8_t type = LoadLE<uint8_t>(p + kTypeOffset);
  if (!IsKnownMessageType(type)) {
    return absl::UnimplementedError(
        absl::StrCat("frame has unknown message type ", type));
  }
  FrameHeader result;
  result.type = static_cast<MessageType>(type);
  result.flags = LoadLE<uint16_t>(p + kFlagsOffset);
  result.request_id = LoadLE<uint64_t>(p + kRequestIdOffset);
  result.body_size = LoadLE<uint32_t>(p + kBodySizeOffset);
  result.body_checksum = LoadLE<uint64_t>(p + kChecksumOffset);
  if (result.body_size > limits.max_body_size) {
    return absl::DataLossError(absl::StrCat("frame body_size is ", result.body_size,
                                            " bytes, over the limit of ",
                                            limits.max_body_size));
  }
  return result;
}

absl::StatusOr<FrameView> ParseFrame(absl::string_view header, absl::string_view body,
                                     const FrameLimits& limits) {
  FrameView frame;
  HIVEMIND_ASSIGN_OR_RETURN(frame.header, ParseFrameHeader(header, limits));
  HIVEMIND_RETURN_IF_ERROR(CheckBodyMatches(frame.header, body));
  frame.body = body;
  return frame;
}

absl::StatusOr<FrameView> ParseFrame(absl::string_view whole, const FrameLimits& limits) {
  if (whole.size() < kFrameHeaderSize) {
    return absl::DataLossError(absl::StrCat("frame is ", whole.size(),
                                            " bytes, shorter than the ", kFrameHeaderSize,
                                            "-byte header"));
  }
  return ParseFrame(whole.substr(0, kFrameHeaderSize), whole.substr(kFrameHeaderSize),
                    limits);
}

}  // namespace wire
}  // namespace hivemind
