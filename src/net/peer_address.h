// How an endpoint's address names the peer behind it. Every connection is encrypted
// and authenticated with CURVE, and a CURVE client must know the server's public key
// before it connects; so an address carries the peer id (from which the key is
// derived) and, in a swarm with a secret, the peer's membership proof:
//
//   tcp://HOST:PORT;id=PEER_ID[;proof=HEX]
//
// (Z85 peer ids never contain ';'.) The transport part is what ZeroMQ connects to.
#ifndef HIVEMIND_NET_PEER_ADDRESS_H_
#define HIVEMIND_NET_PEER_ADDRESS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hivemind/net/identity.h"

namespace hivemind {
namespace internal {

struct PeerAddress {
  std::string transport;  // "tcp://HOST:PORT"
  PeerId peer_id;
  std::string proof;  // hex; empty when the swarm has no secret
};

std::string FormatPeerAddress(const PeerAddress& address);

// kInvalidArgument for an address without a transport or a well-formed peer id, or
// with unknown or repeated fields.
absl::StatusOr<PeerAddress> ParsePeerAddress(absl::string_view text);

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_NET_PEER_ADDRESS_H_
