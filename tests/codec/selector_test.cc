#include "hivemind/codec/selector.h"

#include "gtest/gtest.h"
#include "hivemind/codec/factory.h"
#include "tests/codec/test_util.h"

namespace hivemind {
namespace {

using testing_util::MakeCodec;

TEST(SizeAdaptiveSelector, SmallTensorsGetTheSmallCodec) {
  auto selector = SizeAdaptiveSelector(1000, MakeCodec("fp16"), MakeCodec("blockwise4"));
  EXPECT_EQ(selector->Select({999, TensorRole::kGradient}).options().id,
            CodecId::kFloat16);
  EXPECT_EQ(selector->Select({1000, TensorRole::kGradient}).options().id,
            CodecId::kBlockwise4Bit);
}

TEST(RoleAdaptiveSelector, EachRoleGetsItsOwnCodec) {
  RoleSelectors roles;
  roles.gradient = FixedCodecSelector(MakeCodec("blockwise4"));
  roles.parameter = SizeAdaptiveSelector(100, MakeCodec("none"), MakeCodec("fp16"));
  roles.other = FixedCodecSelector(MakeCodec("bf16"));
  auto selector = RoleAdaptiveSelector(std::move(roles));
  EXPECT_EQ(selector->Select({10, TensorRole::kGradient}).options().id,
            CodecId::kBlockwise4Bit);
  EXPECT_EQ(selector->Select({10, TensorRole::kParameter}).options().id, CodecId::kNone);
  EXPECT_EQ(selector->Select({1000, TensorRole::kParameter}).options().id,
            CodecId::kFloat16);
  // No optimizer-state selector given: falls back to `other`, as does unspecified.
  EXPECT_EQ(selector->Select({10, TensorRole::kOptimizerState}).options().id,
            CodecId::kBFloat16);
  EXPECT_EQ(selector->Select({10, TensorRole::kUnspecified}).options().id,
            CodecId::kBFloat16);
}

}  // namespace
}  // namespace hivemind
