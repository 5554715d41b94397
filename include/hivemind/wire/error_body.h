// The body of a MessageType::kError frame: an absl::Status carried from the peer
// that failed to the peer that asked.
//
// Layout (docs/wire_format.md, "Error body"):
//   u8     code      absl::StatusCode value, 1..16 (the canonical gRPC codes)
//   bytes  message   u32 length, then at most kMaxErrorMessageSize bytes
// Status payloads are not carried.
//
// Thread safety: every function here is pure and may be called concurrently.
#ifndef HIVEMIND_WIRE_ERROR_BODY_H_
#define HIVEMIND_WIRE_ERROR_BODY_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hivemind/export.h"

namespace hivemind {
namespace wire {

// Longest status message an error body carries, in bytes. Longer messages are cut
// by the encoder; a body declaring a longer one is rejected by the parser.
inline constexpr size_t kMaxErrorMessageSize = 4096;

// Encodes `status` as an error body. A message longer than kMaxErrorMessageSize is
// truncated to at most that many bytes, backing up (by at most 3 bytes) so that a
// UTF-8 sequence is not split. Payloads are dropped.
//
// Precondition: !status.ok() (an OK status is not an error; asserted in debug
// builds, and a release build writes a body that ParseErrorBody rejects).
HIVEMIND_EXPORT std::string EncodeErrorBody(const absl::Status& status);

// Decodes an error body sent by a peer.
//
// On success the returned StatusOr is OK and its *value* is the peer's (non-OK)
// status, with the code and message it sent, unprefixed; the caller decides how to
// report it (often returning it as its own error). Otherwise the StatusOr holds:
//  - kDataLoss: the body is truncated; the code is 0 (OK) or not a known
//    absl::StatusCode; the message is longer than kMaxErrorMessageSize; or bytes
//    follow the message.
//
// Beware when writing a function that returns absl::StatusOr<absl::Status>: a
// plain `return some_status;` stores it as the value, not as the error.
HIVEMIND_EXPORT absl::StatusOr<absl::Status> ParseErrorBody(absl::string_view body);

}  // namespace wire
}  // namespace hivemind

#endif  // HIVEMIND_WIRE_ERROR_BODY_H_
