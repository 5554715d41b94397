// Framing of every message that peers exchange over ZeroMQ.
//
// A frame is a fixed 32-byte header followed by a body of `body_size` bytes. The
// header names the message type, correlates replies with requests, bounds the body
// and optionally carries an XXH3-64 checksum of the body. docs/wire_format.md is
// the byte-level specification; this header is its C++ contract.
//
// The body may travel in the same ZeroMQ frame as the header (EncodeFrame, and the
// one-argument ParseFrame) or as a separate ZeroMQ frame so that a large tensor is
// sent without a copy (EncodeFrameHeader, and the two-argument ParseFrame).
//
// Parsing is strict: it never reads outside the given buffers, never trusts a length
// before checking it against both the limits and the bytes actually present, and
// rejects any set reserved bit. A frame that parses re-encodes to the same bytes.
//
// Thread safety: every function here is pure and may be called concurrently.
#ifndef HIVEMIND_WIRE_FRAME_H_
#define HIVEMIND_WIRE_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hivemind/export.h"

namespace hivemind {
namespace wire {

// Size in bytes of the fixed frame header.
inline constexpr size_t kFrameHeaderSize = 32;

// First four bytes of every frame: 'H', 'V', 'M', 'D' (read as a little-endian u32).
inline constexpr uint32_t kFrameMagic = 0x444D5648u;

// Version of the frame layout written by this build. A peer that receives any other
// version rejects the frame with kUnimplemented (see docs/wire_format.md for the
// rules on when the version changes).
inline constexpr uint8_t kWireVersion = 1;

// Header flag bit 0: the body_checksum field holds XXH3_64bits(body). Every other
// flag bit is reserved and must be zero.
inline constexpr uint16_t kFlagChecksum = 1u << 0;

// Largest body the header can describe (body_size is a u32): 4 GiB - 1.
inline constexpr uint64_t kMaxEncodableBodySize = UINT32_MAX;

// The kind of message a frame carries. These values are written on the wire:
// do not renumber, append only. Numbers are grouped by subsystem in blocks of 16.
enum class MessageType : uint8_t {
  // The body is an error status (see hivemind/wire/error_body.h), sent in reply to
  // the request with the same request_id.
  kError = 1,
  // Liveness probe and its reply; bodies are opaque to the framing layer.
  kPing = 2,
  kPong = 3,
  // All-reduce: a peer's part of a tensor, and the reduced result sent back.
  kAllReducePart = 16,
  kAllReduceResult = 17,
  // Group formation (matchmaking).
  kJoinRequest = 32,
  kJoinResponse = 33,
  kGroupAssembled = 34,
  // Model / optimizer state download.
  kStateRequest = 48,
  kStateChunk = 49,
};

// Returns true iff `value` is the number of one of the MessageType enumerators
// above. Parsing rejects every other value.
HIVEMIND_EXPORT bool IsKnownMessageType(uint8_t value);

// Returns a short, stable, human-readable name for `type` ("kPing", ...), or
// "unknown" for a value that is not an enumerator. The returned view refers to
// static storage.
HIVEMIND_EXPORT absl::string_view MessageTypeName(MessageType type);

// Limits a receiver applies before it trusts a header. Keep them as small as the
// protocol allows: a header is peer-controlled input.
struct HIVEMIND_EXPORT FrameLimits {
  // Largest body accepted; a header declaring more is rejected with kDataLoss
  // before any body byte is looked at.
  // Default: 64 MiB.
  uint32_t max_body_size = 64u << 20;
};

// The decoded fields of a frame header. Magic, version and reserved fields are
// validated by the parser and not kept.
struct HIVEMIND_EXPORT FrameHeader {
  MessageType type = MessageType::kPing;
  // Zero or kFlagChecksum; a parsed header never has a reserved bit set.
  uint16_t flags = 0;
  // Opaque to the framing layer: a reply copies the request's id.
  uint64_t request_id = 0;
  // Number of body bytes following the header.
  uint32_t body_size = 0;
  // XXH3_64bits(body) when flags has kFlagChecksum, else zero.
  uint64_t body_checksum = 0;
};

// A parsed frame. `body` points into the buffer passed to ParseFrame and is valid
// only as long as that buffer is alive and unmodified; copy it to keep it longer.
struct HIVEMIND_EXPORT FrameView {
  FrameHeader header;
  absl::string_view body;
};

// Writes the kFrameHeaderSize-byte header of a frame carrying `body` into
// out[0, kFrameHeaderSize). Used when the body is sent as a separate ZeroMQ frame
// without copying it. If `checksum`, the body is hashed (one pass over it) and
// kFlagChecksum is set.
//
// Preconditions (programmer errors, checked, abort the process):
// body.size() <= kMaxEncodableBodySize. `out` must not overlap `body`.
HIVEMIND_EXPORT void EncodeFrameHeader(MessageType type, uint64_t request_id,
                                       absl::string_view body, bool checksum, char* out);

// Returns the header followed by `body` as one contiguous buffer of
// kFrameHeaderSize + body.size() bytes. Same preconditions as EncodeFrameHeader.
HIVEMIND_EXPORT std::string EncodeFrame(MessageType type, uint64_t request_id,
                                        absl::string_view body, bool checksum);

// Decodes and validates a header alone. `header` must be exactly kFrameHeaderSize
// bytes. Does not look at the body, so it cannot verify the checksum.
//
// Returns the header on success, else:
//  - kDataLoss: `header` is not kFrameHeaderSize bytes; wrong magic; a reserved
//    flag bit or the reserved u32 is nonzero; body_checksum is nonzero without
//    kFlagChecksum; body_size is over limits.max_body_size.
//  - kUnimplemented: a wire version other than kWireVersion, or a message type
//    for which IsKnownMessageType is false (a newer peer).
// Every message names the offending field and values.
HIVEMIND_EXPORT absl::StatusOr<FrameHeader> ParseFrameHeader(
    absl::string_view header, const FrameLimits& limits = {});

// Two-part form, for a header and body that arrived as separate ZeroMQ frames.
// Validates the header as ParseFrameHeader does, then requires body.size() to equal
// the header's body_size and, if kFlagChecksum is set, the body's XXH3-64 to match.
// The returned view's body is `body`.
//
// Returns the frame on success, else the codes of ParseFrameHeader, plus
// kDataLoss for a body size that differs from body_size or a checksum mismatch.
HIVEMIND_EXPORT absl::StatusOr<FrameView> ParseFrame(absl::string_view header,
                                                     absl::string_view body,
                                                     const FrameLimits& limits = {});

// Whole-buffer form: `whole` is a header immediately followed by exactly body_size
// body bytes (what EncodeFrame returns). The returned view's body points into
// `whole`.
//
// Returns the frame on success, else the codes of the two-part form; a buffer
// shorter than the header, or with fewer or more bytes than the header declares,
// is kDataLoss.
HIVEMIND_EXPORT absl::StatusOr<FrameView> ParseFrame(absl::string_view whole,
                                                     const FrameLimits& limits = {});

}  // namespace wire
}  // namespace hivemind

#endif  // HIVEMIND_WIRE_FRAME_H_
