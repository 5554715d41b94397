#include "net/peer_address.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace hivemind {
namespace internal {
namespace {

constexpr size_t kPeerIdSize = 40;
constexpr size_t kMaxProofSize = 128;

bool IsHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

std::string FormatPeerAddress(const PeerAddress& address) {
  std::string out = absl::StrCat(address.transport, ";id=", address.peer_id);
  if (!address.proof.empty()) absl::StrAppend(&out, ";proof=", address.proof);
  return out;
}

absl::StatusOr<PeerAddress> ParsePeerAddress(absl::string_view text) {
  auto invalid = [text](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad peer address '", text.substr(0, 200), "': ", why));
  };
  std::vector<absl::string_view> fields = absl::StrSplit(text, ';');
  PeerAddress out;
  out.transport = std::string(fields[0]);
  if (!absl::StartsWith(out.transport, "tcp://") &&
      !absl::StartsWith(out.transport, "ipc://")) {
    return invalid("expected tcp://HOST:PORT or ipc://PATH first");
  }
  for (size_t i = 1; i < fields.size(); ++i) {
    absl::string_view field = fields[i];
    if (absl::ConsumePrefix(&field, "id=")) {
      if (!out.peer_id.empty()) return invalid("repeated id");
      out.peer_id = std::string(field);
    } else if (absl::ConsumePrefix(&field, "proof=")) {
      if (!out.proof.empty()) return invalid("repeated proof");
      if (field.empty() || field.size() > kMaxProofSize || !IsHex(field)) {
        return invalid("the proof is not lowercase hex");
      }
      out.proof = std::string(field);
    } else {
      return invalid("unknown field");
    }
  }
  if (out.peer_id.size() != kPeerIdSize) {
    return invalid("no peer id (';id=' and 40 Z85 characters)");
  }
  return out;
}

}  // namespace internal
}  // namespace hivemind
