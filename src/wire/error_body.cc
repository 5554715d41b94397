#include "hivemind/wire/error_body.h"

#include <cassert>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "hivemind/wire/buffer.h"
#include "util/status_macros.h"

namespace hivemind {
namespace wire {
namespace {

// absl::StatusCode values are the canonical gRPC codes, stable by design, so they
// go on the wire as they are. kUnauthenticated (16) is the largest.
constexpr int kMaxStatusCode = static_cast<int>(absl::StatusCode::kUnauthenticated);

// absl::StatusOr<absl::Status> stores a plain absl::Status as its value. To
// construct the error state, pass a type that only converts to absl::Status.
struct DecodeError {
  absl::Status status;
  operator absl::Status() && { return std::move(status); }  // NOLINT: implicit on purpose
};

bool IsUtf8Continuation(char c) { return (static_cast<uint8_t>(c) & 0xC0) == 0x80; }

// Cuts `message` to at most kMaxErrorMessageSize bytes. If the first dropped byte
// continues a UTF-8 sequence, the cut moves back to where that sequence starts
// (a sequence is at most 4 bytes, so at most 3 steps: arbitrary binary input
// cannot make it back up further).
absl::string_view CapMessage(absl::string_view message) {
  if (message.size() <= kMaxErrorMessageSize) return message;
  size_t cut = kMaxErrorMessageSize;
  for (int step = 0; step < 3 && IsUtf8Continuation(message[cut]); ++step) --cut;
  if (IsUtf8Continuation(message[cut])) cut = kMaxErrorMessageSize;  // Not UTF-8.
  return message.substr(0, cut);
}

absl::Status DecodeInto(absl::string_view body, absl::Status* peer_status) {
  Reader reader(body);
  uint8_t code;
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU8(&code));
  if (code == 0 || code > kMaxStatusCode) {
    return absl::DataLossError(absl::StrCat("error body has status code ", code,
                                            ", expected 1..", kMaxStatusCode));
  }
  absl::string_view message;
  HIVEMIND_RETURN_IF_ERROR(reader.ReadBytes(&message, kMaxErrorMessageSize));
  HIVEMIND_RETURN_IF_ERROR(reader.ExpectEnd());
  *peer_status = absl::Status(static_cast<absl::StatusCode>(code), message);
  return absl::OkStatus();
}

}  // namespace

std::string EncodeErrorBody(const absl::Status& status) {
  assert(!status.ok() && "EncodeErrorBody needs an error status");
  Writer writer;
  writer.PutU8(static_cast<uint8_t>(status.code()));
  writer.PutBytes(CapMessage(status.message()));
  return writer.Release();
}

absl::StatusOr<absl::Status> ParseErrorBody(absl::string_view body) {
  absl::Status peer_status;
  absl::Status decoded = DecodeInto(body, &peer_status);
  if (!decoded.ok()) {
    return DecodeError{
        absl::DataLossError(absl::StrCat("malformed error body: ", decoded.message()))};
  }
  return absl::StatusOr<absl::Status>(absl::in_place, std::move(peer_status));
}

}  // namespace wire
}  // namespace hivemind
