#include "averaging/centered_clip.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace hivemind {
namespace internal {
namespace {

std::vector<absl::Span<const float>> Spans(const std::vector<std::vector<float>>& x) {
  return {x.begin(), x.end()};
}

double Rms(const std::vector<float>& a, const std::vector<double>& b) {
  double sum = 0.0;
  for (size_t k = 0; k < a.size(); ++k) sum += (a[k] - b[k]) * (a[k] - b[k]);
  return std::sqrt(sum / static_cast<double>(a.size()));
}

std::vector<double> Mean(const std::vector<std::vector<float>>& x,
                         const std::vector<float>& w) {
  std::vector<double> mean(x[0].size(), 0.0);
  double total = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    total += w[i];
    for (size_t k = 0; k < mean.size(); ++k) mean[k] += double{w[i]} * x[i][k];
  }
  for (double& m : mean) m /= total;
  return mean;
}

std::vector<std::vector<float>> Gaussian(int n, size_t d, double stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, static_cast<float>(stddev));
  std::vector<std::vector<float>> x(n, std::vector<float>(d));
  for (auto& v : x) {
    for (float& e : v) e = g(rng);
  }
  return x;
}

TEST(WeightedMedian, OddEvenAndWeighted) {
  std::vector<std::pair<double, double>> odd = {{3, 1}, {1, 1}, {2, 1}};
  EXPECT_EQ(WeightedMedian(odd), 2.0);
  std::vector<std::pair<double, double>> even = {{4, 1}, {1, 1}, {2, 1}, {3, 1}};
  EXPECT_EQ(WeightedMedian(even), 2.5);
  // 10 carries more than half the weight.
  std::vector<std::pair<double, double>> heavy = {{10, 5}, {1, 1}, {2, 1}, {3, 1}};
  EXPECT_EQ(WeightedMedian(heavy), 10.0);
  std::vector<std::pair<double, double>> one = {{-7, 0.5}};
  EXPECT_EQ(WeightedMedian(one), -7.0);
}

TEST(CenteredClip, WithALargeRadiusItIsTheWeightedMean) {
  const auto x = Gaussian(5, 1000, 1.0, 1);
  const std::vector<float> w = {1, 2, 3, 0.5f, 4};
  std::vector<float> out(1000);
  auto stats = CenteredClip(Spans(x), w, {/*tau=*/100.0, 20, 1e-6}, absl::MakeSpan(out));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->clipped, 0);
  // The first step from any centre lands on the mean; the second confirms it.
  EXPECT_LE(stats->iterations, 2);
  const std::vector<double> mean = Mean(x, w);
  for (size_t k = 0; k < out.size(); ++k) ASSERT_NEAR(out[k], mean[k], 1e-6);
}

// 7 honest inputs (N(0, 1) per element, so about 1 from their centre) and one at
// 1e3 times an honest vector: the plain mean moves by ~1e3 / 8 per element, the
// clipped centre by at most tau x 1/7 (the fixed-point bound) from the honest mean.
TEST(CenteredClip, OneScaledInputMovesTheCentreByAtMostTauOverHonestWeight) {
  auto x = Gaussian(8, 4096, 1.0, 2);
  const std::vector<std::vector<float>> honest(x.begin(), x.begin() + 7);
  const std::vector<double> honest_mean = Mean(honest, std::vector<float>(7, 1.0f));
  for (float& e : x[7]) e *= 1e3f;
  const std::vector<float> w(8, 1.0f);
  const double tau = 1.5;
  std::vector<float> out(4096);
  auto stats = CenteredClip(Spans(x), w, {tau, 20, 1e-4}, absl::MakeSpan(out));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->clipped, 1);  // only the Byzantine input
  EXPECT_LT(stats->iterations, 20);
  const double bound = tau / 7.0 * (1.0 + 8 * 1e-4) + 1e-6;
  EXPECT_LE(Rms(out, honest_mean), bound);
  std::vector<float> mean_out(4096);
  const std::vector<double> mean = Mean(x, w);
  for (size_t k = 0; k < mean.size(); ++k) mean_out[k] = static_cast<float>(mean[k]);
  EXPECT_GT(Rms(mean_out, honest_mean), 100.0);
}

TEST(CenteredClip, AutomaticRadiusIsTheMedianDistanceAndResistsNoise) {
  auto x = Gaussian(8, 4096, 1.0, 3);
  const std::vector<std::vector<float>> honest(x.begin(), x.begin() + 7);
  const std::vector<double> honest_mean = Mean(honest, std::vector<float>(7, 1.0f));
  x[7] = Gaussian(1, 4096, 1e4, 4)[0];  // large random noise
  std::vector<float> out(4096);
  auto stats = CenteredClip(Spans(x), std::vector<float>(8, 1.0f), {0.0, 20, 1e-4},
                            absl::MakeSpan(out));
  ASSERT_TRUE(stats.ok()) << stats.status();
  // The honest inputs lie about sqrt(1 + 1/8) ~ 1.06 from the median start.
  EXPECT_GT(stats->tau, 0.9);
  EXPECT_LT(stats->tau, 1.3);
  // The noise moves the centre by at most tau / 8 (plus what clipping the honest
  // inputs that lie just beyond tau adds): well under the honest spread of 1.
  EXPECT_LE(Rms(out, honest_mean), stats->tau / 4.0);
}

// With a reject ratio, an input 1e3 x farther from the median start than the
// honest ones is left out: with a radius that clips nothing honest, the centre is
// the honest weighted mean exactly. Inputs within the ratio all stay.
TEST(CenteredClip, FarOutliersAreLeftOutWithARejectRatio) {
  auto x = Gaussian(6, 2048, 1.0, 5);
  const std::vector<float> w = {1, 2, 1, 3, 1, 1};
  const std::vector<std::vector<float>> honest(x.begin(), x.begin() + 5);
  const std::vector<double> honest_mean = Mean(honest, {1, 2, 1, 3, 1});
  for (float& e : x[5]) e *= 1e3f;
  std::vector<float> out(2048);
  auto stats = CenteredClip(Spans(x), w, {100.0, 20, 1e-6, /*reject_ratio=*/10.0},
                            absl::MakeSpan(out));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->rejected, std::vector<size_t>{5});
  for (size_t k = 0; k < out.size(); ++k) ASSERT_NEAR(out[k], honest_mean[k], 1e-5);

  // Only clipped without it: the centre moves by up to tau x 1/8 per element.
  stats = CenteredClip(Spans(x), w, {100.0, 20, 1e-6, 0.0}, absl::MakeSpan(out));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_TRUE(stats->rejected.empty());
  EXPECT_GT(Rms(out, honest_mean), 1.0);

  // Inputs 2x or 3x farther than the others are not outliers at ratio 10; a zero
  // weight input is never reported.
  x[5] = Gaussian(1, 2048, 3.0, 6)[0];
  stats = CenteredClip(Spans(x), {1, 2, 1, 3, 1, 0}, {0.0, 20, 1e-4, 10.0},
                       absl::MakeSpan(out));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_TRUE(stats->rejected.empty());
  stats = CenteredClip(Spans(x), w, {0.0, 20, 1e-4, 10.0}, absl::MakeSpan(out));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_TRUE(stats->rejected.empty());
}

// A Byzantine input claiming more weight than all the honest ones together gets no
// more say in the start or the outlier test than any other input: it is still left
// out, not made the centre with every honest input its outlier.
TEST(CenteredClip, AnInflatedWeightBuysNoVoteInTheMedianOrTheOutlierTest) {
  auto x = Gaussian(4, 2048, 1.0, 7);
  const std::vector<std::vector<float>> honest(x.begin(), x.begin() + 3);
  const std::vector<double> honest_mean = Mean(honest, {1, 1, 1});
  for (float& e : x[3]) e *= -1e3f;
  std::vector<float> out(2048);
  auto stats = CenteredClip(Spans(x), {1, 1, 1, 100}, {100.0, 20, 1e-6, 10.0},
                            absl::MakeSpan(out));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->rejected, std::vector<size_t>{3});
  for (size_t k = 0; k < out.size(); ++k) ASSERT_NEAR(out[k], honest_mean[k], 1e-5);
}

TEST(CenteredClip, ZeroWeightsAreIgnoredEvenInTheMedian) {
  std::vector<std::vector<float>> x = {{1, 1}, {3, 3}, {1e9f, -1e9f}};
  std::vector<float> out(2);
  auto stats = CenteredClip(Spans(x), {1, 1, 0}, {100.0, 20, 1e-6}, absl::MakeSpan(out));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_NEAR(out[0], 2.0f, 1e-6);
  EXPECT_NEAR(out[1], 2.0f, 1e-6);
}

TEST(CenteredClip, EmptyVectorsAndBadArguments) {
  std::vector<float> none;
  std::vector<std::vector<float>> empty = {{}, {}};
  EXPECT_TRUE(CenteredClip(Spans(empty), {1, 1}, {}, absl::MakeSpan(none)).ok());
  std::vector<std::vector<float>> x = {{1, 2}, {3, 4}};
  std::vector<float> out(2);
  auto code = [&](std::vector<float> w, CenteredClipParams p, size_t n = 2) {
    out.resize(n);
    return CenteredClip(Spans(x), w, p, absl::MakeSpan(out)).status().code();
  };
  EXPECT_EQ(code({1, 1}, {}, 3), absl::StatusCode::kInvalidArgument);  // sizes
  EXPECT_EQ(code({1}, {}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({0, 0}, {}), absl::StatusCode::kInvalidArgument);  // zero total
  EXPECT_EQ(code({1, -1}, {}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({1, NAN}, {}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({1, 1}, {-1.0, 20, 1e-4}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({1, 1}, {1.0, 0, 1e-4}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({1, 1}, {INFINITY, 20, 1e-4}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({1, 1}, {1.0, 20, 1e-4, 0.5}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({1, 1}, {1.0, 20, 1e-4, NAN}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({1, 1}, {1.0, 20, 1e-4}), absl::StatusCode::kOk);
  EXPECT_EQ(code({1, 1}, {1.0, 20, 1e-4, 1.0}), absl::StatusCode::kOk);
}

}  // namespace
}  // namespace internal
}  // namespace hivemind
