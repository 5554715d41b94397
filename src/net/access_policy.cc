#include "net/access_policy.h"

#include <sodium.h>

#include "absl/strings/str_cat.h"

namespace hivemind {
namespace internal {
namespace {

constexpr size_t kMinSecretSize = 16;
constexpr char kProofContext[] = "hivemind-member";

std::string Hex(const unsigned char* bytes, size_t size) {
  std::string out(size * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes, size);
  out.pop_back();
  return out;
}

}  // namespace

absl::StatusOr<AccessPolicy> AccessPolicy::Create(const EndpointOptions& options) {
  if (sodium_init() < 0) return absl::InternalError("libsodium cannot initialize");
  AccessPolicy policy;
  if (!options.encrypt &&
      (!options.authorized_peers.empty() || !options.swarm_secret.empty())) {
    return absl::InvalidArgumentError(
        "a private swarm (authorized_peers, swarm_secret) needs encrypt = true");
  }
  for (const PeerId& peer : options.authorized_peers) {
    auto key = CurvePublicKeyOf(peer);
    if (!key.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "authorized_peers holds a malformed peer id: ", key.status().message()));
    }
    policy.allowed_.insert(*std::move(key));
  }
  if (!options.swarm_secret.empty()) {
    if (options.swarm_secret.size() < kMinSecretSize) {
      return absl::InvalidArgumentError(
          absl::StrCat("swarm_secret must be at least ", kMinSecretSize, " bytes"));
    }
    policy.key_.resize(crypto_auth_hmacsha256_KEYBYTES);
    crypto_generichash(
        reinterpret_cast<unsigned char*>(policy.key_.data()), policy.key_.size(),
        reinterpret_cast<const unsigned char*>(options.swarm_secret.data()),
        options.swarm_secret.size(),
        reinterpret_cast<const unsigned char*>(kProofContext), sizeof(kProofContext) - 1);
  }
  return policy;
}

std::string AccessPolicy::ProofFor(absl::string_view curve_key) const {
  if (key_.empty()) return "";
  const std::string message = absl::StrCat(kProofContext, curve_key);
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256(mac, reinterpret_cast<const unsigned char*>(message.data()),
                         message.size(),
                         reinterpret_cast<const unsigned char*>(key_.data()));
  return Hex(mac, sizeof(mac));
}

absl::Status AccessPolicy::AdmitClient(absl::string_view curve_key,
                                       absl::string_view proof) const {
  if (!allowed_.empty() && !allowed_.contains(curve_key)) {
    return absl::PermissionDeniedError(absl::StrCat("the peer with CURVE key ", curve_key,
                                                    " is not on this swarm's allowlist"));
  }
  if (!key_.empty()) {
    const std::string expected = ProofFor(curve_key);
    if (proof.size() != expected.size() ||
        sodium_memcmp(proof.data(), expected.data(), expected.size()) != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("the peer with CURVE key ", curve_key,
                       " has no valid membership proof for this swarm's secret"));
    }
  }
  return absl::OkStatus();
}

absl::Status AccessPolicy::AdmitServer(const PeerAddress& address) const {
  if (open()) return absl::OkStatus();
  auto key = CurvePublicKeyOf(address.peer_id);
  if (!key.ok()) return key.status();
  absl::Status admitted = AdmitClient(*key, address.proof);
  if (admitted.ok()) return admitted;
  return absl::PermissionDeniedError(
      absl::StrCat("refusing to send to ", address.peer_id, ": ", admitted.message()));
}

}  // namespace internal
}  // namespace hivemind
