#include "hivemind/codec/factory.h"

#include <string>

#include "gtest/gtest.h"

namespace hivemind {
namespace {

TEST(ParseCodecSpec, ReadsNamesParametersAndZstd) {
  auto o = ParseCodecSpec("blockwise8:block=2048,stochastic=1+zstd=5");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->id, CodecId::kBlockwise8Bit);
  EXPECT_EQ(o->block_size, 2048u);
  EXPECT_TRUE(o->stochastic_rounding);
  EXPECT_TRUE(o->zstd);
  EXPECT_EQ(o->zstd_level, 5);

  o = ParseCodecSpec("fp16+zstd");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->id, CodecId::kFloat16);
  EXPECT_TRUE(o->zstd);
  EXPECT_EQ(o->zstd_level, 1);
}

TEST(ParseCodecSpec, EveryCodecNameRoundTripsThroughCodecSpec) {
  for (int i = 0; i < kNumCodecIds; ++i) {
    CodecOptions options;
    options.id = static_cast<CodecId>(i);
    options.block_size = 512;
    options.zstd = i % 2 == 0;
    options.zstd_level = 3;
    const std::string spec = CodecSpec(options);
    auto parsed = ParseCodecSpec(spec);
    ASSERT_TRUE(parsed.ok()) << spec << ": " << parsed.status();
    EXPECT_EQ(CodecSpec(*parsed), spec);
    auto codec = CreateCodec(*parsed);
    ASSERT_TRUE(codec.ok()) << codec.status();
    EXPECT_EQ((*codec)->options().id, options.id);
  }
}

TEST(ParseCodecSpec, RejectsMalformedSpecs) {
  for (const char* bad : {"", "blockwise3", "fp16:", "blockwise8:block", "fp16+lz4",
                          "blockwise8:block=x", "blockwise8:size=4",
                          "blockwise8:stochastic=2", "fp16+zstd+zstd", "fp16+zstd=x"}) {
    EXPECT_EQ(ParseCodecSpec(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(CreateCodec, ValidatesOptions) {
  CodecOptions options;
  options.id = CodecId::kBlockwise4Bit;
  for (uint32_t block : {0u, 4u, 100u, (1u << 20) + 8}) {
    options.block_size = block;
    EXPECT_EQ(CreateCodec(options).status().code(), absl::StatusCode::kInvalidArgument)
        << block;
  }
  options.block_size = 64;
  options.zstd = true;
  options.zstd_level = 20;
  EXPECT_EQ(CreateCodec(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.id = static_cast<CodecId>(42);
  options.zstd = false;
  EXPECT_EQ(CreateCodec(options).status().code(), absl::StatusCode::kInvalidArgument);
  // Block size is ignored by codecs without blocks.
  options.id = CodecId::kFloat16;
  options.block_size = 3;
  EXPECT_TRUE(CreateCodec(options).ok());
}

}  // namespace
}  // namespace hivemind
