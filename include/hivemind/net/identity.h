// Peer identity: every peer holds a CURVE key pair (ZeroMQ's Curve25519 keys, in Z85
// text form); its public key is its peer id. Today the key identifies a peer in
// groups and reports; the same keys will switch on CURVE encryption and
// authentication of every connection (the security issue) without changing ids.
#ifndef HIVEMIND_NET_IDENTITY_H_
#define HIVEMIND_NET_IDENTITY_H_

#include <string>

#include "absl/status/statusor.h"
#include "hivemind/export.h"

namespace hivemind {

// A peer id: a Z85-encoded Curve25519 public key, 40 characters.
using PeerId = std::string;

struct HIVEMIND_EXPORT KeyPair {
  std::string public_key;  // Z85, 40 characters: the peer id
  std::string secret_key;  // Z85, 40 characters: never leaves the peer
};

// Generates a fresh key pair from the system's randomness. Returns kInternal if
// ZeroMQ was built without CURVE support.
HIVEMIND_EXPORT absl::StatusOr<KeyPair> GenerateKeyPair();

// Derives the public key of a Z85 secret key. kInvalidArgument for a malformed key.
HIVEMIND_EXPORT absl::StatusOr<std::string> PublicKeyOf(const std::string& secret_key);

}  // namespace hivemind

#endif  // HIVEMIND_NET_IDENTITY_H_
