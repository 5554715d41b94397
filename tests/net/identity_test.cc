#include "hivemind/net/identity.h"

#include <zmq.h>

#include <string>

#include "gtest/gtest.h"

namespace hivemind {
namespace {

KeyPair Fresh() {
  auto keys = GenerateKeyPair();
  EXPECT_TRUE(keys.ok()) << keys.status();
  return keys.ok() ? *keys : KeyPair{};
}

TEST(Identity, KeyPairsAreFreshAndConsistent) {
  const KeyPair a = Fresh();
  const KeyPair b = Fresh();
  EXPECT_EQ(a.public_key.size(), 40u);
  EXPECT_EQ(a.secret_key.size(), 40u);
  EXPECT_NE(a.public_key, b.public_key);
  EXPECT_NE(a.secret_key, b.secret_key);
  auto derived = PublicKeyOf(a.secret_key);
  ASSERT_TRUE(derived.ok()) << derived.status();
  EXPECT_EQ(*derived, a.public_key);
}

TEST(Identity, MalformedKeysAreInvalidArgument) {
  const KeyPair a = Fresh();
  for (const std::string& bad :
       {std::string("short"), std::string(40, '"'),  // '"' is not a Z85 character
        a.secret_key + "x", a.secret_key.substr(0, 35),
        std::string(40, '#'),  // "#####" overflows 32 bits: not canonical Z85
        a.secret_key.substr(0, 20) + std::string(1, '\0') + a.secret_key.substr(21)}) {
    EXPECT_EQ(PublicKeyOf(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
    EXPECT_EQ(CurvePublicKeyOf(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
    EXPECT_EQ(CurveKeysOf({a.public_key, bad}).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(Sign({a.public_key, bad}, "m").status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_FALSE(VerifySignature(bad, "m", std::string(kSignatureSize, 'x')));
  }
  // A well-formed pair whose halves belong to different keys.
  const KeyPair b = Fresh();
  EXPECT_EQ(CurveKeysOf({a.public_key, b.secret_key}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Sign({a.public_key, b.secret_key}, "m").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Identity, DerivedCurveKeysAreAZeroMqKeyPair) {
  const KeyPair a = Fresh();
  auto curve = CurveKeysOf(a);
  ASSERT_TRUE(curve.ok()) << curve.status();
  EXPECT_EQ(curve->public_key.size(), 40u);
  EXPECT_EQ(curve->secret_key.size(), 40u);
  // ZeroMQ computes the same public key from the derived secret key.
  char public_key[41] = {};
  ASSERT_EQ(zmq_curve_public(public_key, curve->secret_key.c_str()), 0);
  EXPECT_EQ(std::string(public_key), curve->public_key);
  // A peer's CURVE key can be computed from its peer id alone.
  auto from_id = CurvePublicKeyOf(a.public_key);
  ASSERT_TRUE(from_id.ok()) << from_id.status();
  EXPECT_EQ(*from_id, curve->public_key);
  EXPECT_NE(*CurvePublicKeyOf(Fresh().public_key), curve->public_key);
}

TEST(Identity, SignaturesVerifyOnlyForTheSignerAndTheMessage) {
  const KeyPair a = Fresh();
  const KeyPair b = Fresh();
  const std::string message("declaration\0bytes", 17);
  auto signature = Sign(a, message);
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_EQ(signature->size(), kSignatureSize);
  EXPECT_TRUE(VerifySignature(a.public_key, message, *signature));
  EXPECT_TRUE(VerifySignature(a.public_key, "", *Sign(a, "")));

  EXPECT_FALSE(VerifySignature(b.public_key, message, *signature));  // another key
  std::string tampered_message = message;
  tampered_message[0] ^= 1;
  EXPECT_FALSE(VerifySignature(a.public_key, tampered_message, *signature));
  std::string tampered_signature = *signature;
  tampered_signature[10] ^= 1;
  EXPECT_FALSE(VerifySignature(a.public_key, message, tampered_signature));
  std::string tampered_key = a.public_key;
  tampered_key[5] = tampered_key[5] == 'a' ? 'b' : 'a';
  EXPECT_FALSE(VerifySignature(tampered_key, message, *signature));
  EXPECT_FALSE(VerifySignature(a.public_key, message, signature->substr(1)));
  EXPECT_FALSE(VerifySignature(a.public_key, message, ""));
  EXPECT_FALSE(VerifySignature(a.public_key, message, std::string(kSignatureSize, '\0')));
}

}  // namespace
}  // namespace hivemind
