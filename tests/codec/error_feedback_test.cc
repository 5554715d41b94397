#include "hivemind/codec/error_feedback.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/codec/test_util.h"

namespace hivemind {
namespace {

using testing_util::DecodeOrDie;
using testing_util::EncodeOrDie;
using testing_util::MakeCodec;
using testing_util::RandomNormal;

// Mean over `rounds` of the decoded payloads of `x`, with or without feedback;
// returns the largest |mean - x| over the elements.
double MeanErrorAfter(const std::string& spec, const std::vector<float>& x, int rounds,
                      bool feedback) {
  auto codec = MakeCodec(spec);
  ErrorFeedback ef(codec.get());
  std::vector<double> sum(x.size(), 0.0);
  for (int r = 0; r < rounds; ++r) {
    std::string payload;
    if (feedback) {
      EXPECT_TRUE(ef.Encode(x, &payload).ok());
    } else {
      payload = EncodeOrDie(*codec, x);
    }
    const std::vector<float> y = DecodeOrDie(payload, x.size());
    for (size_t i = 0; i < x.size(); ++i) sum[i] += y[i];
  }
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    worst = std::max(worst, std::fabs(sum[i] / rounds - x[i]));
  }
  return worst;
}

class ErrorFeedbackRounds : public ::testing::TestWithParam<const char*> {};

TEST_P(ErrorFeedbackRounds, MeanErrorOfHundredEncodesShrinksAsOneOverT) {
  const std::vector<float> x = RandomNormal(4096 * 4, 1);
  double absmax = 0;
  for (float v : x) absmax = std::max(absmax, std::fabs(double{v}));
  const double one_shot = MeanErrorAfter(GetParam(), x, 1, false);
  const double without = MeanErrorAfter(GetParam(), x, 100, false);
  const double with = MeanErrorAfter(GetParam(), x, 100, true);
  // Deterministic rounding repeats the same error: averaging does not help.
  EXPECT_NEAR(without, one_shot, 1e-6);
  // With feedback the mean error is |residual| / T; the residual is at most half
  // the block's range (absmax of input plus residual, over L-1 = 3 levels for 2-bit).
  EXPECT_LE(with, absmax / 100);
  EXPECT_LT(with * 20, one_shot);
}

INSTANTIATE_TEST_SUITE_P(Codecs, ErrorFeedbackRounds,
                         ::testing::Values("blockwise2", "blockwise4", "blockwise8",
                                           "fp16", "bf16"));

TEST(ErrorFeedback, ResidualIsWhatTheCodecLost) {
  auto codec = MakeCodec("blockwise2");
  ErrorFeedback ef(codec.get());
  const std::vector<float> x = RandomNormal(1000, 2);
  std::string payload;
  ASSERT_TRUE(ef.Encode(x, &payload).ok());
  const std::vector<float> y = DecodeOrDie(payload, x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_NEAR(ef.residual()[i], x[i] - y[i], 1e-6) << i;
  }
  // The next encode carries the residual: it encodes x + residual.
  std::vector<float> corrected(x.size());
  for (size_t i = 0; i < x.size(); ++i) corrected[i] = x[i] + ef.residual()[i];
  ASSERT_TRUE(ef.Encode(x, &payload).ok());
  EXPECT_EQ(payload, EncodeOrDie(*codec, corrected));
  ef.Reset();
  EXPECT_TRUE(ef.residual().empty());
}

TEST(ErrorFeedback, RejectsSizeChangeAndNaNWithoutLosingTheResidual) {
  auto codec = MakeCodec("blockwise4");
  ErrorFeedback ef(codec.get());
  std::vector<float> x = RandomNormal(100, 3);
  std::string payload;
  ASSERT_TRUE(ef.Encode(x, &payload).ok());
  const std::vector<float> before(ef.residual().begin(), ef.residual().end());
  EXPECT_EQ(ef.Encode(RandomNormal(99, 3), &payload).code(),
            absl::StatusCode::kInvalidArgument);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(ef.Encode(x, &payload).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::vector<float>(ef.residual().begin(), ef.residual().end()), before);
}

}  // namespace
}  // namespace hivemind
