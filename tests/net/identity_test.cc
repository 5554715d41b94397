#include "hivemind/net/identity.h"

#include "gtest/gtest.h"

namespace hivemind {
namespace {

TEST(Identity, KeyPairsAreFreshAndConsistent) {
  auto a = GenerateKeyPair();
  auto b = GenerateKeyPair();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->public_key.size(), 40u);
  EXPECT_EQ(a->secret_key.size(), 40u);
  EXPECT_NE(a->public_key, b->public_key);
  auto derived = PublicKeyOf(a->secret_key);
  ASSERT_TRUE(derived.ok());
  EXPECT_EQ(*derived, a->public_key);
  EXPECT_EQ(PublicKeyOf("short").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hivemind
