#include "hivemind/net/identity.h"

#include <sodium.h>
#include <zmq.h>

#include <array>
#include <string>

#include "absl/status/status.h"

namespace hivemind {
namespace {

constexpr size_t kKeyBytes = 32;  // Ed25519 public key and seed, X25519 keys
constexpr size_t kZ85KeyChars = 40;
static_assert(crypto_sign_PUBLICKEYBYTES == kKeyBytes);
static_assert(crypto_sign_SEEDBYTES == kKeyBytes);
static_assert(crypto_sign_BYTES == kSignatureSize);
static_assert(crypto_scalarmult_curve25519_BYTES == kKeyBytes);

using Key = std::array<uint8_t, kKeyBytes>;

// Secret bytes on the stack, wiped when they go out of scope.
template <size_t N>
struct SecretBytes {
  std::array<uint8_t, N> bytes{};
  SecretBytes() = default;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes() { sodium_memzero(bytes.data(), bytes.size()); }
  uint8_t* data() { return bytes.data(); }
};

absl::Status EnsureSodium() {
  // sodium_init is thread-safe and idempotent; the static runs it once.
  static const bool kReady = sodium_init() >= 0;
  if (!kReady) return absl::InternalError("libsodium failed to initialize");
  return absl::OkStatus();
}

std::string Z85(const uint8_t* bytes) {
  char text[kZ85KeyChars + 1] = {};
  zmq_z85_encode(text, bytes, kKeyBytes);
  return std::string(text, kZ85KeyChars);
}

// Decodes 40 Z85 characters into 32 bytes. Z85 is canonical (a value that overflows
// 32 bits is rejected), so each key has exactly one text form.
bool FromZ85(const std::string& text, uint8_t* out) {
  if (text.size() != kZ85KeyChars || text.find('\0') != std::string::npos) {
    return false;
  }
  return zmq_z85_decode(out, text.c_str()) != nullptr;
}

// The full secret key (seed + public key) of a Z85 seed, and its public key.
absl::Status ExpandSecret(const std::string& secret_key, Key* public_key,
                          SecretBytes<crypto_sign_SECRETKEYBYTES>* full) {
  absl::Status ready = EnsureSodium();
  if (!ready.ok()) return ready;
  SecretBytes<kKeyBytes> seed;
  if (!FromZ85(secret_key, seed.data())) {
    return absl::InvalidArgumentError(
        "secret key is not a 40-character Z85 Ed25519 seed");
  }
  crypto_sign_seed_keypair(public_key->data(), full->data(), seed.data());
  return absl::OkStatus();
}

// ExpandSecret, also checking that `identity.public_key` belongs to the secret key.
absl::Status ExpandIdentity(const KeyPair& identity, Key* public_key,
                            SecretBytes<crypto_sign_SECRETKEYBYTES>* full) {
  absl::Status expanded = ExpandSecret(identity.secret_key, public_key, full);
  if (!expanded.ok()) return expanded;
  if (Z85(public_key->data()) != identity.public_key) {
    return absl::InvalidArgumentError("public key is not the secret key's");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<KeyPair> GenerateKeyPair() {
  absl::Status ready = EnsureSodium();
  if (!ready.ok()) return ready;
  SecretBytes<kKeyBytes> seed;
  randombytes_buf(seed.data(), kKeyBytes);
  Key public_key;
  SecretBytes<crypto_sign_SECRETKEYBYTES> full;
  crypto_sign_seed_keypair(public_key.data(), full.data(), seed.data());
  return KeyPair{Z85(public_key.data()), Z85(seed.data())};
}

absl::StatusOr<std::string> PublicKeyOf(const std::string& secret_key) {
  Key public_key;
  SecretBytes<crypto_sign_SECRETKEYBYTES> full;
  absl::Status expanded = ExpandSecret(secret_key, &public_key, &full);
  if (!expanded.ok()) return expanded;
  return Z85(public_key.data());
}

absl::StatusOr<CurveKeys> CurveKeysOf(const KeyPair& identity) {
  Key public_key;
  SecretBytes<crypto_sign_SECRETKEYBYTES> full;
  absl::Status expanded = ExpandIdentity(identity, &public_key, &full);
  if (!expanded.ok()) return expanded;
  Key curve_public;
  SecretBytes<kKeyBytes> curve_secret;
  if (crypto_sign_ed25519_pk_to_curve25519(curve_public.data(), public_key.data()) != 0) {
    return absl::InvalidArgumentError("public key has no CURVE counterpart");
  }
  crypto_sign_ed25519_sk_to_curve25519(curve_secret.data(), full.data());
  return CurveKeys{Z85(curve_public.data()), Z85(curve_secret.data())};
}

absl::StatusOr<std::string> CurvePublicKeyOf(const PeerId& peer_id) {
  absl::Status ready = EnsureSodium();
  if (!ready.ok()) return ready;
  Key public_key;
  Key curve_public;
  if (!FromZ85(peer_id, public_key.data()) ||
      crypto_sign_ed25519_pk_to_curve25519(curve_public.data(), public_key.data()) != 0) {
    return absl::InvalidArgumentError(
        "peer id is not the Z85 text of an Ed25519 public key");
  }
  return Z85(curve_public.data());
}

absl::StatusOr<std::string> Sign(const KeyPair& identity, absl::string_view message) {
  Key public_key;
  SecretBytes<crypto_sign_SECRETKEYBYTES> full;
  absl::Status expanded = ExpandIdentity(identity, &public_key, &full);
  if (!expanded.ok()) return expanded;
  std::string signature(kSignatureSize, '\0');
  crypto_sign_detached(reinterpret_cast<unsigned char*>(signature.data()), nullptr,
                       reinterpret_cast<const unsigned char*>(message.data()),
                       message.size(), full.data());
  return signature;
}

bool VerifySignature(const PeerId& signer, absl::string_view message,
                     absl::string_view signature) {
  if (!EnsureSodium().ok() || signature.size() != kSignatureSize) return false;
  Key public_key;
  if (!FromZ85(signer, public_key.data())) return false;
  return crypto_sign_verify_detached(
             reinterpret_cast<const unsigned char*>(signature.data()),
             reinterpret_cast<const unsigned char*>(message.data()), message.size(),
             public_key.data()) == 0;
}

}  // namespace hivemind
