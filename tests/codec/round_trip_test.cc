// Round trips of every codec on every kind of buffer, checked against the error bound
// documented in docs/codecs.md.
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hivemind/codec/codec.h"
#include "hivemind/codec/factory.h"
#include "tests/codec/test_util.h"

namespace hivemind {
namespace {

using testing_util::BlockAbsMax;
using testing_util::DecodeOrDie;
using testing_util::EncodeOrDie;
using testing_util::MakeCodec;
using testing_util::RandomNormal;

constexpr size_t kBlock = 64;  // small blocks so that many block edges are crossed

std::vector<std::string> AllSpecs() {
  return {"none",
          "fp16",
          "bf16",
          "scaled_fp16:block=64",
          "uniform8",
          "quantile8",
          "blockwise8:block=64",
          "blockwise4:block=64",
          "blockwise2:block=64",
          "blockwise8:block=64,stochastic=1",
          "blockwise4:block=64,stochastic=1",
          "blockwise2:block=64,stochastic=1",
          "blockwise4:block=64+zstd",
          "fp16+zstd=3",
          "uniform8+zstd"};
}

// Checks decoded against x with the bound of the codec named by `options`.
void ExpectWithinBound(const CodecOptions& options, const std::vector<float>& x,
                       const std::vector<float>& y) {
  ASSERT_EQ(x.size(), y.size());
  const double eps = std::ldexp(1.0, -22);
  switch (options.id) {
    case CodecId::kNone:
      for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], y[i]) << i;
      return;
    case CodecId::kFloat16:
      for (size_t i = 0; i < x.size(); ++i) {
        const double clamped = std::min(65504.0, std::max(-65504.0, double{x[i]}));
        const double bound =
            std::max(std::fabs(clamped) * std::ldexp(1.0, -11), std::ldexp(1.0, -25));
        ASSERT_LE(std::fabs(clamped - y[i]), bound) << i << " x=" << x[i];
      }
      return;
    case CodecId::kBFloat16:
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_LE(std::fabs(double{x[i]} - y[i]),
                  std::fabs(x[i]) * std::ldexp(1.0, -8) + 1e-38)
            << i;
      }
      return;
    case CodecId::kScaledFloat16: {
      // err <= d * 2^-11 + rounding of d*z + mean, with d the block's deviation.
      for (size_t b = 0; b < x.size(); b += options.block_size) {
        const size_t e = std::min(x.size(), b + options.block_size);
        double sum = 0, dev = 0;
        for (size_t i = b; i < e; ++i) sum += x[i];
        const double mean = sum / (e - b);
        for (size_t i = b; i < e; ++i) dev = std::max(dev, std::fabs(x[i] - mean));
        for (size_t i = b; i < e; ++i) {
          const double bound = dev * std::ldexp(1.0, -11) + (std::fabs(mean) + dev) * eps;
          ASSERT_LE(std::fabs(double{x[i]} - y[i]), bound) << i;
        }
      }
      return;
    }
    case CodecId::kUniform8Bit: {
      double sum = 0, sq = 0;
      for (float v : x) sum += v;
      const double mean = sum / x.size();
      for (float v : x) sq += (v - mean) * (v - mean);
      const double scale = 6.0 * std::sqrt(sq / x.size()) / 256.0;
      for (size_t i = 0; i < x.size(); ++i) {
        // Away from the two edge bins (which also collect every value beyond
        // mean +- 3 sigma), the error is at most one bin width.
        if (std::fabs(x[i] - mean) > 126 * scale) continue;
        ASSERT_LE(std::fabs(double{x[i]} - y[i]),
                  scale * 1.001 + std::fabs(mean) * eps + 1e-30)
            << i;
      }
      return;
    }
    case CodecId::kQuantile8Bit: {
      // Codes are monotone in x (the ranges of x behind each decoded value do not
      // overlap) and each decoded value is the mean of its bin.
      struct Bin {
        double sum = 0, min = INFINITY, max = -INFINITY;
        size_t count = 0;
      };
      std::map<float, Bin> bins;  // by decoded value
      for (size_t i = 0; i < x.size(); ++i) {
        Bin& bin = bins[y[i]];
        bin.sum += x[i];
        bin.min = std::min(bin.min, double{x[i]});
        bin.max = std::max(bin.max, double{x[i]});
        ++bin.count;
        ASSERT_LE(bins.size(), 256u);
      }
      double previous_max = -INFINITY;
      for (const auto& [decoded, bin] : bins) {
        ASSERT_LE(previous_max, bin.min) << "decoding is not monotone";
        previous_max = bin.max;
        const double mean = bin.sum / bin.count;
        ASSERT_NEAR(decoded, mean, std::fabs(mean) * 1e-6 + 1e-30);
      }
      return;
    }
    case CodecId::kBlockwise8Bit:
    case CodecId::kBlockwise4Bit:
    case CodecId::kBlockwise2Bit: {
      const int levels = options.id == CodecId::kBlockwise8Bit   ? 255
                         : options.id == CodecId::kBlockwise4Bit ? 15
                                                                 : 4;
      // Nearest rounding: half a step; stochastic: less than one step.
      const double steps = options.stochastic_rounding ? 2.0 : 1.0;
      const std::vector<double> absmax = BlockAbsMax(x, options.block_size);
      for (size_t i = 0; i < x.size(); ++i) {
        const double bound = absmax[i] * (steps / (levels - 1) + eps);
        ASSERT_LE(std::fabs(double{x[i]} - y[i]), bound) << i << " x=" << x[i];
      }
      return;
    }
  }
  FAIL() << "unknown codec";
}

class RoundTrip : public ::testing::TestWithParam<std::string> {
 protected:
  void Check(const std::vector<float>& x) {
    const std::string spec = GetParam();
    auto codec = MakeCodec(spec);
    const std::string payload = EncodeOrDie(*codec, x, /*seed=*/3);
    ASSERT_LE(payload.size(), codec->MaxEncodedSize(x.size()));
    auto info = ReadPayloadInfo(payload);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->codec, codec->options().id);
    EXPECT_EQ(info->count, x.size());
    EXPECT_EQ(info->zstd, codec->options().zstd);
    ExpectWithinBound(codec->options(), x, DecodeOrDie(payload, x.size()));
  }
};

TEST_P(RoundTrip, RandomNormal) { Check(RandomNormal(10000, 1)); }

TEST_P(RoundTrip, ShiftedAndScaled) { Check(RandomNormal(5000, 2, 300.0f, 0.01f)); }

TEST_P(RoundTrip, WideDynamicRange) {
  std::vector<float> x = RandomNormal(4096, 3);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] *= std::exp2(static_cast<float>(i % 40) - 20);
  Check(x);
}

TEST_P(RoundTrip, Constant) { Check(std::vector<float>(1000, 0.75f)); }

TEST_P(RoundTrip, Zeros) { Check(std::vector<float>(1000, 0.0f)); }

TEST_P(RoundTrip, OneElement) { Check({-2.5f}); }

TEST_P(RoundTrip, Empty) { Check({}); }

TEST_P(RoundTrip, NotAMultipleOfTheBlock) {
  for (size_t n : {kBlock - 1, kBlock + 1, 3 * kBlock + 5, kBlock * 2 + 3}) {
    SCOPED_TRACE(n);
    Check(RandomNormal(n, static_cast<uint32_t>(n)));
  }
}

TEST_P(RoundTrip, IsDeterministic) {
  auto codec = MakeCodec(GetParam());
  const std::vector<float> x = RandomNormal(3000, 4);
  EXPECT_EQ(EncodeOrDie(*codec, x, 9), EncodeOrDie(*codec, x, 9));
}

TEST_P(RoundTrip, DecodeAddIsWeightedDecode) {
  auto codec = MakeCodec(GetParam());
  const std::vector<float> x = RandomNormal(2000, 5);
  const std::string payload = EncodeOrDie(*codec, x);
  const std::vector<float> decoded = DecodeOrDie(payload, x.size());

  // Weight 1 into zeros is bit-identical to Decode.
  std::vector<float> acc(x.size(), 0.0f);
  ASSERT_TRUE(DecodeAdd(payload, 1.0f, absl::MakeSpan(acc)).ok());
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(acc[i], decoded[i]) << i;

  // Any weight accumulates onto what is there.
  std::vector<float> base = RandomNormal(x.size(), 6);
  acc = base;
  ASSERT_TRUE(DecodeAdd(payload, 0.25f, absl::MakeSpan(acc)).ok());
  for (size_t i = 0; i < x.size(); ++i) {
    const double expected = base[i] + 0.25 * decoded[i];
    ASSERT_NEAR(acc[i], expected, 1e-6 * (std::fabs(expected) + 1)) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, RoundTrip, ::testing::ValuesIn(AllSpecs()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

// 64 Mi elements (256 MiB of float32) per codec, default block size.
class LargeRoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(LargeRoundTrip, SixtyFourMebiElements) {
  const size_t n = size_t{64} << 20;
  std::vector<float> x(n);
  // A cheap deterministic pattern with varying magnitude (mt19937 on 64 Mi values is
  // slow under sanitizers).
  uint32_t state = 12345;
  for (size_t i = 0; i < n; ++i) {
    state = state * 1664525u + 1013904223u;
    x[i] = (static_cast<float>(state >> 8) * (1.0f / 8388608.0f) - 1.0f) *
           static_cast<float>(1 + (i >> 16) % 7);
  }
  auto codec = MakeCodec(GetParam());
  std::string payload = EncodeOrDie(*codec, x);
  std::vector<float> y = DecodeOrDie(payload, n);
  payload.clear();
  payload.shrink_to_fit();
  ExpectWithinBound(codec->options(), x, y);
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, LargeRoundTrip,
                         ::testing::Values("none", "fp16", "bf16", "scaled_fp16",
                                           "uniform8", "quantile8", "blockwise8",
                                           "blockwise4", "blockwise2"));

TEST(Compression, PayloadSizesMatchTheFormat) {
  const size_t n = 100000;
  const std::vector<float> x = RandomNormal(n, 8);
  const size_t blocks = (n + 4095) / 4096;
  const std::map<std::string, size_t> expected = {
      {"none", 4 * n},
      {"fp16", 2 * n},
      {"bf16", 2 * n},
      {"scaled_fp16", 8 * blocks + 2 * n},
      {"uniform8", 1024 + n},
      {"quantile8", 1024 + n},
      {"blockwise8", 4 * blocks + n},
      {"blockwise4", 4 * blocks + (n / 4096) * 2048 + ((n % 4096) + 1) / 2},
      {"blockwise2", 4 * blocks + (n / 4096) * 1024 + ((n % 4096) + 3) / 4},
  };
  for (const auto& [spec, body] : expected) {
    EXPECT_EQ(EncodeOrDie(*MakeCodec(spec), x).size(), kPayloadHeaderSize + body) << spec;
  }
}

TEST(Compression, ZstdShrinksRedundantCodes) {
  std::vector<float> x(1 << 16);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 8);
  const size_t plain = EncodeOrDie(*MakeCodec("blockwise8"), x).size();
  const size_t packed = EncodeOrDie(*MakeCodec("blockwise8+zstd"), x).size();
  EXPECT_LT(packed * 10, plain);
}

TEST(StochasticRounding, IsUnbiasedAcrossSeeds) {
  auto codec = MakeCodec("blockwise2:block=8,stochastic=1");
  const std::vector<float> x = {1.0f, 0.9f, 0.5f, 0.2f, 0.0f, -0.1f, -0.6f, -1.0f};
  std::vector<double> mean(x.size(), 0.0);
  const int rounds = 4000;
  for (int seed = 0; seed < rounds; ++seed) {
    const std::vector<float> y = DecodeOrDie(EncodeOrDie(*codec, x, seed), x.size());
    for (size_t i = 0; i < x.size(); ++i) mean[i] += y[i] / rounds;
  }
  // Step 2/3: per-draw standard deviation <= 1/3, so 5 sigma of the mean is 0.027.
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(mean[i], x[i], 0.027) << i;
  // Nearest rounding, by contrast, is biased for 0.2 (it always decodes to 1/3).
  auto nearest = MakeCodec("blockwise2:block=8");
  EXPECT_NEAR(DecodeOrDie(EncodeOrDie(*nearest, x), x.size())[3], 1.0 / 3, 1e-6);
}

TEST(StochasticRounding, SeedChangesTheCodes) {
  auto codec = MakeCodec("blockwise4:stochastic=1");
  const std::vector<float> x = RandomNormal(4096, 10);
  EXPECT_NE(EncodeOrDie(*codec, x, 1), EncodeOrDie(*codec, x, 2));
}

}  // namespace
}  // namespace hivemind
