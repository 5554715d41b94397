// libFuzzer target for what matchmaking parses from peers and the DHT: declarations,
// join requests and join responses (with a leader hint), and peer addresses. Whatever
// parses re-encodes to the same bytes (addresses: to an equivalent address).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "averaging/matchmaking_messages.h"
#include "net/peer_address.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace internal = hivemind::internal;
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto declaration = internal::ParseDeclaration(bytes);
  if (declaration.ok() && internal::EncodeDeclaration(*declaration) != bytes)
    std::abort();
  auto request = internal::ParseJoinRequest(bytes);
  if (request.ok() && internal::EncodeJoinRequest(*request) != bytes) std::abort();
  auto response = internal::ParseJoinResponse(bytes);
  if (response.ok()) {
    if (response->accepted && response->your_index >= response->group.members.size()) {
      std::abort();
    }
    if (internal::EncodeJoinResponse(*response) != bytes) std::abort();
  }
  auto address = internal::ParsePeerAddress(bytes);
  if (address.ok()) {
    auto again = internal::ParsePeerAddress(internal::FormatPeerAddress(*address));
    if (!again.ok() || again->transport != address->transport ||
        again->peer_id != address->peer_id || again->proof != address->proof) {
      std::abort();
    }
  }
  return 0;
}
