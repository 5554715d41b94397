// Who may talk to an endpoint, and whom it talks to. Every connection is CURVE-
// encrypted; a private swarm also admits only its members, known either by an
// allowlist of peer ids or by a swarm secret. With a secret, a member's proof is
// HMAC-SHA256(key(secret), "hivemind-member" || its CURVE public key): it binds the
// secret to one key, so it may travel in the open (in addresses, in the DHT) - using
// it needs that key's secret half, which the CURVE handshake proves. With both, a
// peer must pass both.
#ifndef HIVEMIND_NET_ACCESS_POLICY_H_
#define HIVEMIND_NET_ACCESS_POLICY_H_

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hivemind/net/endpoint.h"
#include "net/peer_address.h"

namespace hivemind {
namespace internal {

class AccessPolicy {
 public:
  // kInvalidArgument for a malformed peer id in the allowlist or a secret shorter
  // than 16 bytes.
  static absl::StatusOr<AccessPolicy> Create(const EndpointOptions& options);

  // An open swarm: anyone with a key may connect (still encrypted).
  bool open() const { return allowed_.empty() && key_.empty(); }

  // Whether a client whose CURVE public key is `curve_key` (Z85) and which presented
  // `proof` (hex, possibly empty) may send requests here. kPermissionDenied with the
  // reason otherwise.
  absl::Status AdmitClient(absl::string_view curve_key, absl::string_view proof) const;

  // Whether this endpoint may send to the peer at `address` (a member of the swarm).
  // kPermissionDenied with the reason otherwise.
  absl::Status AdmitServer(const PeerAddress& address) const;

  // The proof a peer with this CURVE public key (Z85) presents; empty without a
  // secret.
  std::string ProofFor(absl::string_view curve_key) const;

 private:
  absl::flat_hash_set<std::string> allowed_;  // CURVE public keys, Z85
  std::string key_;                           // HMAC key derived from the secret
};

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_NET_ACCESS_POLICY_H_
