// Byzantine members in a butterfly all-reduce (AggregationOptions): eight peers in
// one process (threads) over real ZeroMQ sockets on 127.0.0.1, one of them sending
// scaled values, large noise, NaN or absurd magnitudes.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "hivemind/averaging/allreduce.h"
#include "hivemind/codec/factory.h"
#include "tests/averaging/allreduce_group.h"

namespace hivemind {
namespace {

constexpr int kMembers = 8;
constexpr int kByzantine = 7;
constexpr size_t kNumel = 60000;

using testing_util::RandomInputs;
using testing_util::Swarm;

// Mean of members 0..kByzantine-1.
std::vector<double> HonestMean(const std::vector<std::vector<float>>& values) {
  std::vector<double> mean(values[0].size(), 0.0);
  for (int i = 0; i < kByzantine; ++i) {
    for (size_t k = 0; k < mean.size(); ++k) mean[k] += values[i][k];
  }
  for (double& m : mean) m /= kByzantine;
  return mean;
}

double Rms(const std::vector<float>& a, const std::vector<double>& b) {
  double sum = 0.0;
  for (size_t k = 0; k < a.size(); ++k) sum += (a[k] - b[k]) * (a[k] - b[k]);
  return std::sqrt(sum / static_cast<double>(a.size()));
}

// Members 0..members-1 hold the same bytes.
void ExpectBitIdentical(const std::vector<std::vector<float>>& values, int members) {
  std::vector<int> all(members);
  for (int i = 0; i < members; ++i) all[i] = i;
  testing_util::ExpectBitIdentical(values, all);
}

// `reject_ratio` 0: far contributions are only clipped (the clipping bound below is
// what the first tests check).
AllReduceOptions Options(Aggregation method, float tau, float reject_ratio = 0.0f) {
  AllReduceOptions options;
  options.part_size = 4096;
  options.sender_timeout = absl::Seconds(5);
  options.timeout = absl::Seconds(30);
  options.aggregation.method = method;
  options.aggregation.clip_tau = tau;
  options.aggregation.clip_reject_ratio = reject_ratio;
  return options;
}

// Runs all 8 members with member 7's values replaced by `byzantine`; returns the
// RMS distance of the (bit-identical) result from the honest mean. Expects every
// reducer to list `outliers` as such.
double DistanceFromHonestMean(const AllReduceOptions& options,
                              const std::vector<float>& byzantine,
                              const std::vector<int>& outliers = {}) {
  Swarm swarm(std::vector<MemberMode>(kMembers, MemberMode::kNode));
  auto values = RandomInputs(kMembers, kNumel, 21);
  const std::vector<double> honest = HonestMean(values);
  values[kByzantine] = byzantine;
  auto reports = swarm.Run(values, std::vector<AllReduceOptions>(kMembers, options));
  for (int i = 0; i < kMembers; ++i) {
    EXPECT_TRUE(reports[i].ok()) << reports[i].status();
    if (!reports[i].ok()) return INFINITY;
    EXPECT_TRUE(reports[i]->excluded.empty());
    EXPECT_EQ(reports[i]->outliers, outliers) << "member " << i;
    for (const SpanOutcome& s : reports[i]->spans) EXPECT_TRUE(s.status.ok()) << s.status;
  }
  ExpectBitIdentical(values, kMembers);
  return Rms(values[0], honest);
}

double DistanceFromHonestMean(Aggregation method, float tau,
                              const std::vector<float>& byzantine) {
  return DistanceFromHonestMean(Options(method, tau), byzantine);
}

// Gaussian noise of std 100 (honest values are uniform in [-1, 1]).
std::vector<float> Noise(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 100.0f);
  std::vector<float> noisy(kNumel);
  for (float& x : noisy) x = noise(rng);
  return noisy;
}

// Honest values are uniform in [-1, 1] (RMS 0.58): with tau = 1 every honest
// contribution lies within tau of the centre, so CenteredClip's fixed point is
// within tau x (Byzantine weight / honest weight) = 1/7 of the honest mean (plus
// the stopping tolerance, 1e-4 x tau x 8/7), whatever member 7 sends.
constexpr float kTau = 1.0f;
constexpr double kBound = kTau / 7.0 * (1.0 + 8e-4) + 1e-5;

TEST(ByzantineAllReduce, ScaledMemberPullsTheMeanButNotCenteredClip) {
  std::vector<float> scaled = RandomInputs(kMembers, kNumel, 21)[kByzantine];
  for (float& x : scaled) x *= 1e3f;
  const double mean = DistanceFromHonestMean(Aggregation::kMean, 0, scaled);
  const double clipped = DistanceFromHonestMean(Aggregation::kCenteredClip, kTau, scaled);
  const double automatic = DistanceFromHonestMean(Aggregation::kCenteredClip, 0, scaled);
  std::printf(
      "RMS distance from the honest mean: mean %.4g, CenteredClip tau=1 %.4g, "
      "automatic tau %.4g (bound %.4g)\n",
      mean, clipped, automatic, kBound);
  // The mean moves by 1e3 x 0.58 / 8 ~ 72.
  EXPECT_GT(mean, 50.0);
  EXPECT_LE(clipped, kBound);
  // The automatic radius is the median distance (~0.62 here): no bound is proven
  // for it, but it is as tight.
  EXPECT_LE(automatic, kBound);
}

TEST(ByzantineAllReduce, NoisyMemberPullsTheMeanButNotCenteredClip) {
  const std::vector<float> noisy = Noise(5);
  const double mean = DistanceFromHonestMean(Aggregation::kMean, 0, noisy);
  const double clipped = DistanceFromHonestMean(Aggregation::kCenteredClip, kTau, noisy);
  const double automatic = DistanceFromHonestMean(Aggregation::kCenteredClip, 0, noisy);
  std::printf(
      "RMS distance from the honest mean: mean %.4g, CenteredClip tau=1 %.4g, "
      "automatic tau %.4g (bound %.4g)\n",
      mean, clipped, automatic, kBound);
  EXPECT_GT(mean, 10.0);  // 100 / 8 = 12.5
  EXPECT_LE(clipped, kBound);
  EXPECT_LE(automatic, kBound);
}

// With the default reject ratio (10), contributions 1e3 x or 100 x farther from the
// median than the honest ones take no part at all: with tau = 100 (no honest value
// is clipped) the result is the exact honest mean, and every reducer names member 7.
TEST(ByzantineAllReduce, FarOutliersAreLeftOutEntirely) {
  std::vector<float> scaled = RandomInputs(kMembers, kNumel, 21)[kByzantine];
  for (float& x : scaled) x *= 1e3f;
  const std::vector<float> noisy = Noise(6);
  const AllReduceOptions options =
      Options(Aggregation::kCenteredClip, 100.0f, AggregationOptions().clip_reject_ratio);
  for (const std::vector<float>& byzantine : {scaled, noisy}) {
    const double distance = DistanceFromHonestMean(options, byzantine, {kByzantine});
    EXPECT_LE(distance, 1e-6);
  }
  // An honest group has no outliers: every member contributes.
  const double honest = DistanceFromHonestMean(
      options, RandomInputs(kMembers, kNumel, 21)[kByzantine], /*outliers=*/{});
  EXPECT_LT(honest, 0.2);  // the 8-member mean: about 0.58 / 8 from the 7-member one
}

// Encodes like `inner` and then makes the payload's last float a NaN, as a
// Byzantine peer with a patched encoder could.
class NanCodec : public Codec {
 public:
  explicit NanCodec(std::unique_ptr<Codec> inner) : inner_(std::move(inner)) {}
  const CodecOptions& options() const override { return inner_->options(); }
  size_t MaxEncodedSize(size_t count) const override {
    return inner_->MaxEncodedSize(count);
  }
  absl::StatusOr<size_t> Encode(absl::Span<const float> values, absl::Span<char> out,
                                const EncodeOptions& options) const override {
    absl::StatusOr<size_t> n = inner_->Encode(values, out, options);
    if (n.ok() && *n >= kPayloadHeaderSize + sizeof(float)) {
      const float nan = std::nanf("");
      std::memcpy(out.data() + *n - sizeof(float), &nan, sizeof(float));
    }
    return n;
  }

 private:
  std::unique_ptr<Codec> inner_;
};

// Member 7 (a client, so it reduces nothing itself) sends bad parts to every
// reducer: each excludes it with `code` before its values touch the average, and
// the others get their exact mean, bit-identical.
void ExpectBadMemberExcluded(Aggregation method, AllReduceOptions byzantine_options,
                             std::vector<float> byzantine_values, absl::StatusCode code) {
  std::vector<MemberMode> modes(kMembers, MemberMode::kNode);
  modes[kByzantine] = MemberMode::kClient;
  Swarm swarm(modes);
  auto values = RandomInputs(kMembers, kNumel, 22);
  const std::vector<double> honest = HonestMean(values);
  values[kByzantine] = std::move(byzantine_values);
  // tau = 100: nothing honest is clipped, so CenteredClip lands on the mean.
  std::vector<AllReduceOptions> options(kMembers, Options(method, 100.0f));
  byzantine_options.aggregation.method = method;
  options[kByzantine] = byzantine_options;
  auto reports = swarm.Run(values, options);
  for (int i = 0; i < kByzantine; ++i) {
    ASSERT_TRUE(reports[i].ok()) << reports[i].status();
    const AllReduceReport& r = *reports[i];
    ASSERT_EQ(r.excluded.size(), 1u) << "member " << i;
    EXPECT_EQ(r.excluded[0].first, kByzantine);
    EXPECT_EQ(r.excluded[0].second.code(), code) << r.excluded[0].second;
    EXPECT_EQ(r.contributors, (std::vector<int>{0, 1, 2, 3, 4, 5, 6}));
    for (size_t k = 0; k < kNumel; ++k) {
      ASSERT_NEAR(values[i][k], honest[k], 1e-6) << "member " << i << " index " << k;
    }
  }
  ExpectBitIdentical(values, kByzantine);
}

class BadMember : public ::testing::TestWithParam<Aggregation> {};

TEST_P(BadMember, NanPartsAreExcludedWithTheReason) {
  AllReduceOptions options = Options(GetParam(), 100.0f);
  auto raw = CreateCodecFromSpec("none");
  ASSERT_TRUE(raw.ok());
  NanCodec nan_codec(std::move(raw).value());
  options.codec = &nan_codec;
  ExpectBadMemberExcluded(GetParam(), options, RandomInputs(1, kNumel, 23)[0],
                          absl::StatusCode::kDataLoss);
}

TEST_P(BadMember, AbsurdMagnitudesAreExcludedWithTheReason) {
  // The Byzantine member lifts its own bound to send 1e20 x its values; the others
  // keep the default bound (1e15).
  AllReduceOptions options = Options(GetParam(), 100.0f);
  options.aggregation.max_abs_value = 0.0f;
  std::vector<float> huge = RandomInputs(1, kNumel, 24)[0];
  for (float& x : huge) x *= 1e20f;
  ExpectBadMemberExcluded(GetParam(), options, huge, absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Aggregations, BadMember,
                         ::testing::Values(Aggregation::kMean,
                                           Aggregation::kCenteredClip),
                         [](const ::testing::TestParamInfo<Aggregation>& info) {
                           return info.param == Aggregation::kMean
                                      ? std::string("Mean")
                                      : std::string("CenteredClip");
                         });

TEST(ByzantineAllReduce, AMemberWithAnotherAggregationIsExcluded) {
  Swarm swarm(std::vector<MemberMode>(4, MemberMode::kNode));
  auto values = RandomInputs(4, 20000, 25);
  std::vector<AllReduceOptions> options(4, Options(Aggregation::kCenteredClip, 0));
  options[3].aggregation.method = Aggregation::kMean;
  auto reports = swarm.Run(values, options);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(reports[i].ok()) << reports[i].status();
    ASSERT_EQ(reports[i]->excluded.size(), 1u);
    EXPECT_EQ(reports[i]->excluded[0].first, 3);
    EXPECT_EQ(reports[i]->excluded[0].second.code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(reports[i]->excluded[0].second.message().find("aggregates with"),
              std::string::npos);
  }
  ASSERT_TRUE(reports[3].ok()) << reports[3].status();
  EXPECT_EQ(reports[3]->excluded.size(), 3u);
}

TEST(ByzantineAllReduce, InvalidAggregationOptionsAreRejected) {
  Swarm swarm(std::vector<MemberMode>(2, MemberMode::kNode));
  std::vector<std::vector<float>> values(2, std::vector<float>(100, 1.0f));
  auto code = [&](AllReduceOptions o) {
    std::vector<AllReduceOptions> options(2, o);
    options[1].timeout = absl::Milliseconds(1);  // member 1 gives up at once
    return swarm.Run(values, options)[0].status().code();
  };
  AllReduceOptions options;
  options.aggregation.clip_tau = -1.0f;
  EXPECT_EQ(code(options), absl::StatusCode::kInvalidArgument);
  options = {};
  options.aggregation.clip_iterations = 0;
  EXPECT_EQ(code(options), absl::StatusCode::kInvalidArgument);
  options = {};
  options.aggregation.clip_reject_ratio = 0.5f;  // would leave out the median itself
  EXPECT_EQ(code(options), absl::StatusCode::kInvalidArgument);
  options = {};
  options.aggregation.max_abs_value = NAN;
  EXPECT_EQ(code(options), absl::StatusCode::kInvalidArgument);
  options = {};
  options.aggregation.max_abs_value = 0.5f;  // the values are 1
  EXPECT_EQ(code(options), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hivemind
