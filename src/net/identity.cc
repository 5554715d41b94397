#include "hivemind/net/identity.h"

#include <zmq.h>

#include "absl/strings/str_cat.h"

namespace hivemind {

absl::StatusOr<KeyPair> GenerateKeyPair() {
  char public_key[41] = {};
  char secret_key[41] = {};
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot generate a CURVE key pair: ", zmq_strerror(zmq_errno())));
  }
  return KeyPair{public_key, secret_key};
}

absl::StatusOr<std::string> PublicKeyOf(const std::string& secret_key) {
  char public_key[41] = {};
  if (secret_key.size() != 40 || zmq_curve_public(public_key, secret_key.c_str()) != 0) {
    return absl::InvalidArgumentError("secret key is not a 40-character Z85 CURVE key");
  }
  return std::string(public_key);
}

}  // namespace hivemind
