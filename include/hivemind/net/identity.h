// Peer identity: every peer holds an Ed25519 key pair (libsodium), written as Z85
// text; its public key is its peer id. The key signs what the peer writes to the DHT
// (dht/dht.h), so no one can write records in its name, and the X25519 keys that
// ZeroMQ's CURVE mechanism needs to encrypt and authenticate connections are derived
// from it, so one key is both a peer's DHT signature and its transport identity.
//
// Thread safety: every function is thread-safe.
#ifndef HIVEMIND_NET_IDENTITY_H_
#define HIVEMIND_NET_IDENTITY_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hivemind/export.h"

namespace hivemind {

// A peer id: the Z85 text of a 32-byte Ed25519 public key, 40 characters.
using PeerId = std::string;

struct HIVEMIND_EXPORT KeyPair {
  std::string public_key;  // Z85 of the Ed25519 public key, 40 characters: the peer id
  std::string secret_key;  // Z85 of the 32-byte Ed25519 seed, 40 characters: never
                           // leaves the peer
};

// Length of a signature made by Sign, in bytes.
inline constexpr size_t kSignatureSize = 64;

// Generates a fresh key pair from the system's randomness. Returns kInternal if
// libsodium cannot initialize.
HIVEMIND_EXPORT absl::StatusOr<KeyPair> GenerateKeyPair();

// Derives the public key (the peer id) of a Z85 secret key. kInvalidArgument for a
// malformed key.
HIVEMIND_EXPORT absl::StatusOr<std::string> PublicKeyOf(const std::string& secret_key);

// X25519 keys for ZeroMQ's ZMQ_CURVE_PUBLICKEY / ZMQ_CURVE_SECRETKEY /
// ZMQ_CURVE_SERVERKEY options, in Z85 text.
struct HIVEMIND_EXPORT CurveKeys {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

// Derives the CURVE keys of an identity. kInvalidArgument for a malformed key or a
// public key that is not the secret key's.
HIVEMIND_EXPORT absl::StatusOr<CurveKeys> CurveKeysOf(const KeyPair& identity);

// Derives the CURVE public key of a peer (what a client passes as
// ZMQ_CURVE_SERVERKEY to connect to it). Equals CurveKeysOf(its identity).public_key.
// kInvalidArgument for a malformed peer id (not 40 Z85 characters, or not a point of
// the curve).
HIVEMIND_EXPORT absl::StatusOr<std::string> CurvePublicKeyOf(const PeerId& peer_id);

// Signs `message` with the identity's secret key: a 64-byte (kSignatureSize) detached
// Ed25519 signature, raw bytes. kInvalidArgument for a malformed key or a public key
// that is not the secret key's.
HIVEMIND_EXPORT absl::StatusOr<std::string> Sign(const KeyPair& identity,
                                                 absl::string_view message);

// True when `signature` is `signer`'s valid signature of `message`. False for a
// malformed peer id or signature as well as for a wrong one.
HIVEMIND_EXPORT bool VerifySignature(const PeerId& signer, absl::string_view message,
                                     absl::string_view signature);

}  // namespace hivemind

#endif  // HIVEMIND_NET_IDENTITY_H_
