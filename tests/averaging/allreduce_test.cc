// Butterfly all-reduce among peers in one process (threads), over real ZeroMQ sockets
// on 127.0.0.1.
#include "hivemind/averaging/allreduce.h"

#include <atomic>
#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "hivemind/codec/factory.h"
#include "hivemind/wire/buffer.h"
#include "tests/averaging/allreduce_group.h"
#include "tests/net/raw_peer.h"
#include "zmq.hpp"

namespace hivemind {
namespace {

using testing_util::ExpectBitIdentical;
using testing_util::RandomInputs;
using testing_util::Swarm;

std::vector<double> WeightedMean(const std::vector<std::vector<float>>& values,
                                 const std::vector<float>& weights) {
  std::vector<double> mean(values[0].size(), 0.0);
  double total = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    total += weights[i];
    for (size_t k = 0; k < mean.size(); ++k) mean[k] += double{weights[i]} * values[i][k];
  }
  for (double& m : mean) m /= total;
  return mean;
}

AllReduceOptions SmallParts() {
  AllReduceOptions options;
  options.part_size = 4096;  // many parts per span
  options.sender_timeout = absl::Seconds(5);
  options.timeout = absl::Seconds(30);
  return options;
}

class RawMean : public ::testing::TestWithParam<int> {};

TEST_P(RawMean, EveryMemberGetsTheExactMean) {
  const int n = GetParam();
  Swarm swarm(std::vector<MemberMode>(n, MemberMode::kNode));
  auto values = RandomInputs(n, 100003, n);
  const std::vector<double> mean = WeightedMean(values, std::vector<float>(n, 1.0f));
  auto reports = swarm.Run(values, std::vector<AllReduceOptions>(n, SmallParts()));
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(reports[i].ok()) << reports[i].status();
    for (const SpanOutcome& s : reports[i]->spans) EXPECT_TRUE(s.status.ok()) << s.status;
    EXPECT_TRUE(reports[i]->excluded.empty());
    EXPECT_EQ(static_cast<int>(reports[i]->contributors.size()), n);
    for (size_t k = 0; k < mean.size(); ++k) {
      ASSERT_NEAR(values[i][k], mean[k], 1e-6) << "member " << i << " index " << k;
    }
  }
  std::vector<int> all;
  for (int i = 0; i < n; ++i) all.push_back(i);
  ExpectBitIdentical(values, all);
}

INSTANTIATE_TEST_SUITE_P(Peers, RawMean, ::testing::Range(2, 9));

TEST(AllReduce, WeightedMean) {
  Swarm swarm(std::vector<MemberMode>(4, MemberMode::kNode));
  auto values = RandomInputs(4, 50000, 7);
  const std::vector<float> weights = {1, 2, 3, 0.5f};
  const std::vector<double> mean = WeightedMean(values, weights);
  std::vector<AllReduceOptions> options(4, SmallParts());
  for (int i = 0; i < 4; ++i) options[i].weight = weights[i];
  auto reports = swarm.Run(values, options);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(reports[i].ok()) << reports[i].status();
    for (size_t k = 0; k < mean.size(); ++k) ASSERT_NEAR(values[i][k], mean[k], 1e-6);
  }
}

TEST(AllReduce, ClientAndAuxiliaryMembers) {
  Swarm swarm({MemberMode::kNode, MemberMode::kClient, MemberMode::kAuxiliary,
               MemberMode::kNode});
  auto values = RandomInputs(4, 60000, 8);
  const std::vector<float> aux_before = values[2];
  // The auxiliary member contributes nothing: the mean is over members 0, 1, 3.
  const std::vector<double> mean =
      WeightedMean({values[0], values[1], values[3]}, {1, 1, 1});
  auto reports = swarm.Run(values, std::vector<AllReduceOptions>(4, SmallParts()));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(reports[i].ok()) << reports[i].status();
  // The client reduces nothing; the auxiliary member reduces a span.
  EXPECT_EQ(reports[0]->spans[1].end - reports[0]->spans[1].begin, 0u);
  EXPECT_GT(reports[0]->spans[2].end - reports[0]->spans[2].begin, 0u);
  for (int i : {0, 1, 3}) {
    for (const SpanOutcome& s : reports[i]->spans) EXPECT_TRUE(s.status.ok()) << s.status;
    for (size_t k = 0; k < mean.size(); ++k) ASSERT_NEAR(values[i][k], mean[k], 1e-6);
  }
  ExpectBitIdentical(values, {0, 1, 3});
  EXPECT_EQ(values[2], aux_before);
  EXPECT_EQ(reports[2]->contributors, (std::vector<int>{0, 1, 3}));
}

struct CodecCase {
  const char* spec;
  double tolerance;  // on |result - mean| for inputs in [-1, 1]
};

void PrintTo(const CodecCase& c, std::ostream* os) { *os << c.spec; }

class CodecAllReduce : public ::testing::TestWithParam<CodecCase> {};

TEST_P(CodecAllReduce, WithinTheCodecBoundAndBitIdentical) {
  auto codec = CreateCodecFromSpec(GetParam().spec);
  ASSERT_TRUE(codec.ok());
  Swarm swarm(std::vector<MemberMode>(4, MemberMode::kNode));
  auto values = RandomInputs(4, 70001, 9);
  const std::vector<double> mean = WeightedMean(values, {1, 1, 1, 1});
  std::vector<AllReduceOptions> options(4, SmallParts());
  for (auto& o : options) o.codec = codec->get();
  auto reports = swarm.Run(values, options);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(reports[i].ok()) << reports[i].status();
    double worst = 0;
    for (size_t k = 0; k < mean.size(); ++k) {
      worst = std::max(worst, std::fabs(values[i][k] - mean[k]));
    }
    EXPECT_LE(worst, GetParam().tolerance) << GetParam().spec;
  }
  ExpectBitIdentical(values, {0, 1, 2, 3});
}

// Each value is encoded twice (the part, then the averaged part); bounds from
// docs/codecs.md with absmax <= 1. The averages are narrower than the inputs, so
// uniform8 clips their tails into its edge bins and quantile8's tail bins are wide.
INSTANTIATE_TEST_SUITE_P(
    Codecs, CodecAllReduce,
    ::testing::Values(CodecCase{"none", 1e-6}, CodecCase{"fp16", 2e-3},
                      CodecCase{"bf16", 1.6e-2}, CodecCase{"scaled_fp16", 2e-3},
                      CodecCase{"uniform8", 0.06}, CodecCase{"quantile8", 0.2},
                      CodecCase{"blockwise8", 2.0 / 254 + 1e-6},
                      CodecCase{"blockwise4", 2.0 / 14 + 1e-6},
                      CodecCase{"blockwise2", 2.0 / 3 + 1e-6},
                      CodecCase{"blockwise4+zstd", 2.0 / 14 + 1e-6}),
    [](const ::testing::TestParamInfo<CodecCase>& info) {
      std::string name = info.param.spec;
      for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return name;
    });

TEST(AllReduce, ErrorFeedbackMakesRepeatedRoundsUnbiased) {
  // Four peers average the same inputs for 30 rounds with 2-bit codes. Without
  // feedback each round makes the same error; with it the mean over rounds of the
  // results approaches the true mean.
  auto codec = CreateCodecFromSpec("blockwise2:block=256");
  ASSERT_TRUE(codec.ok());
  const auto inputs = RandomInputs(4, 20000, 10);
  const std::vector<double> mean = WeightedMean(inputs, {1, 1, 1, 1});
  auto mean_error = [&](bool feedback) {
    Swarm swarm(std::vector<MemberMode>(4, MemberMode::kNode));
    std::vector<std::vector<float>> residuals(4, std::vector<float>(inputs[0].size()));
    std::vector<double> sum(mean.size(), 0.0);
    const int rounds = 30;
    for (int r = 0; r < rounds; ++r) {
      auto values = inputs;
      std::vector<AllReduceOptions> options(4, SmallParts());
      for (int i = 0; i < 4; ++i) {
        options[i].codec = codec->get();
        if (feedback) options[i].residual = &residuals[i];
      }
      swarm.group().group_id = "ef-" + std::to_string(feedback) + "-" + std::to_string(r);
      auto reports = swarm.Run(values, options);
      for (auto& rep : reports) EXPECT_TRUE(rep.ok()) << rep.status();
      for (size_t k = 0; k < mean.size(); ++k) sum[k] += values[0][k];
    }
    double err = 0;
    for (size_t k = 0; k < mean.size(); ++k) err += std::fabs(sum[k] / rounds - mean[k]);
    return err / mean.size();
  };
  const double without = mean_error(false);
  const double with = mean_error(true);
  EXPECT_LT(with * 3, without) << "with feedback " << with << ", without " << without;
}

// Round 1 averages full values; round 2 averages slightly changed values as deltas
// against round 1's result. With the same 4-bit codec the delta round is far more
// accurate, the members holding the reference end bit-identical, and a newcomer
// (member 3, no reference) still gets the average within the codec's bound.
TEST(AllReduce, DeltaModeAgainstTheSharedReference) {
  auto codec = CreateCodecFromSpec("blockwise4:block=256");
  ASSERT_TRUE(codec.ok());
  Swarm swarm(std::vector<MemberMode>(4, MemberMode::kNode));
  auto values = RandomInputs(4, 30000, 14);
  std::vector<AllReduceOptions> options(4, SmallParts());
  for (auto& o : options) o.codec = codec->get();
  auto first = swarm.Run(values, options);
  for (auto& r : first) ASSERT_TRUE(r.ok()) << r.status();
  ExpectBitIdentical(values, {0, 1, 2, 3});
  const std::vector<float> reference = values[0];

  // Each member moves a little (as parameters do between rounds).
  auto changes = RandomInputs(4, 30000, 15);
  for (int i = 0; i < 4; ++i) {
    for (size_t k = 0; k < values[i].size(); ++k) values[i][k] += 1e-3f * changes[i][k];
  }
  const std::vector<double> mean = WeightedMean(values, {1, 1, 1, 1});
  const uint64_t hash = ReferenceHash(reference);
  swarm.group().group_id += "-delta";
  for (int i = 0; i < 3; ++i) {  // member 3 is a newcomer without the reference
    swarm.group().members[i].reference_hash = hash;
    options[i].reference = &reference;
  }
  auto second = swarm.Run(values, options);
  double worst_holder = 0, worst_newcomer = 0;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(second[i].ok()) << second[i].status();
    for (const SpanOutcome& s : second[i]->spans) EXPECT_TRUE(s.status.ok()) << s.status;
    for (size_t k = 0; k < mean.size(); ++k) {
      double& worst = i < 3 ? worst_holder : worst_newcomer;
      worst = std::max(worst, std::fabs(values[i][k] - mean[k]));
    }
  }
  ExpectBitIdentical(values, {0, 1, 2});
  // Deltas are ~1e-3 (plus round 1's error in the reference for the newcomer's
  // part): a 4-bit step of the delta, not of the values.
  EXPECT_LT(worst_holder, 0.02) << "delta mode error";
  EXPECT_LT(worst_newcomer, 2.0 / 14 + 1e-6) << "newcomer error";
  // Full values with the same codec err by up to a 4-bit step of the values.
  EXPECT_LT(worst_holder * 3, 2.0 / 14);
}

TEST(AllReduce, SilentMemberIsExcludedAndSurvivorsFinishByTheDeadline) {
  Swarm swarm(std::vector<MemberMode>(4, MemberMode::kNode));
  auto values = RandomInputs(4, 40000, 11);
  const auto inputs = values;
  std::vector<AllReduceOptions> options(4, SmallParts());
  for (auto& o : options) {
    o.sender_timeout = absl::Milliseconds(500);
    o.timeout = absl::Seconds(5);
  }
  const absl::Time start = absl::Now();
  // Member 3 is in the group but never runs its round: it never sends a part and
  // never answers one.
  auto reports = swarm.Run(values, options, {0, 1, 2});
  EXPECT_LT(absl::Now() - start, absl::Seconds(7));
  const std::vector<double> survivors_mean =
      WeightedMean({inputs[0], inputs[1], inputs[2]}, {1, 1, 1});
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(reports[i].ok()) << reports[i].status();
    const AllReduceReport& r = *reports[i];
    ASSERT_EQ(r.excluded.size(), 1u);
    EXPECT_EQ(r.excluded[0].first, 3);
    EXPECT_EQ(r.excluded[0].second.code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_EQ(r.contributors, (std::vector<int>{0, 1, 2}));
    for (const SpanOutcome& s : r.spans) {
      for (uint64_t k = s.begin; k < s.end; ++k) {
        if (s.reducer == 3) {  // the dead reducer's span keeps local values
          ASSERT_EQ(values[i][k], inputs[i][k]);
        } else {
          ASSERT_NEAR(values[i][k], survivors_mean[k], 1e-6);
        }
      }
      EXPECT_EQ(s.status.ok(), s.reducer != 3) << s.status;
    }
  }
}

TEST(AllReduce, MemberThatStopsRespondingMidRound) {
  // Member 3's endpoint shuts down once it has sent 1 MiB: it stops sending parts
  // and answering them in the middle of the round.
  Swarm swarm(std::vector<MemberMode>(4, MemberMode::kNode));
  auto values = RandomInputs(4, 2000000, 16);
  const auto inputs = values;
  std::vector<AllReduceOptions> options(4, SmallParts());
  for (auto& o : options) {
    o.max_parts_in_flight = 2;
    o.sender_timeout = absl::Milliseconds(500);
    o.timeout = absl::Seconds(10);
  }
  std::atomic<bool> stop{false};
  std::thread watcher([&] {
    while (!stop && swarm.peer(3).endpoint->stats().bytes_sent < (1u << 20)) {
      absl::SleepFor(absl::Microseconds(200));
    }
    swarm.peer(3).endpoint->Shutdown();
  });
  const absl::Time start = absl::Now();
  auto reports = swarm.Run(values, options);
  stop = true;
  watcher.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(12));
  EXPECT_EQ(reports[3].status().code(), absl::StatusCode::kCancelled);
  int saw_failure = 0;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(reports[i].ok()) << reports[i].status();
    saw_failure += reports[i]->excluded.empty() ? 0 : 1;
    for (const SpanOutcome& s : reports[i]->spans) {
      EXPECT_EQ(s.status.ok(), s.reducer != 3) << s.status;
      for (uint64_t k = s.begin; k < s.end; k += 7) {
        const double all =
            (inputs[0][k] + inputs[1][k] + inputs[2][k] + inputs[3][k]) / 4.0;
        const double survivors = (inputs[0][k] + inputs[1][k] + inputs[2][k]) / 3.0;
        const float v = values[i][k];
        // The mean of all (member 3's part arrived), of the survivors, or - in the
        // stopped member's span - the local value.
        ASSERT_TRUE(std::fabs(v - all) < 1e-6 || std::fabs(v - survivors) < 1e-6 ||
                    (s.reducer == 3 && v == inputs[i][k]))
            << "member " << i << " index " << k;
        if (s.reducer != 3) {
          ASSERT_EQ(v, values[0][k]);
        }
      }
    }
  }
  EXPECT_GE(saw_failure, 1);
}

TEST(AllReduce, GarbageSentToAMemberDoesNotStopTheRound) {
  Swarm swarm(std::vector<MemberMode>(3, MemberMode::kNode));
  auto values = RandomInputs(3, 200000, 12);
  const std::vector<double> mean = WeightedMean(values, {1, 1, 1});
  std::atomic<bool> stop{false};
  std::thread attacker([&] {
    zmq::context_t context;
    zmq::socket_t raw(context, zmq::socket_type::dealer);
    raw.set(zmq::sockopt::linger, 0);
    testing_util::ConnectRaw(raw, swarm.group().members[0].address);
    const std::string truncated =
        wire::EncodeFrame(wire::MessageType::kAllReducePart, 1, "junk", true)
            .substr(0, 20);
    while (!stop) {
      raw.send(zmq::str_buffer("garbage"), zmq::send_flags::dontwait);
      raw.send(zmq::buffer(truncated), zmq::send_flags::dontwait);
      absl::SleepFor(absl::Milliseconds(1));
    }
  });
  auto reports = swarm.Run(values, std::vector<AllReduceOptions>(3, SmallParts()));
  stop = true;
  attacker.join();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(reports[i].ok()) << reports[i].status();
    for (size_t k = 0; k < mean.size(); ++k) ASSERT_NEAR(values[i][k], mean[k], 1e-6);
  }
  EXPECT_GE(swarm.peer(0).endpoint->stats().bad_frames, 1u);
}

TEST(AllReduce, ForgedPartsAreRejectedAndTheirSenderExcluded) {
  // Member 2's endpoint sends a part whose payload does not fit its span: the
  // reducer rejects it, excludes member 2, and averages over the others.
  Swarm swarm(std::vector<MemberMode>(3, MemberMode::kNode));
  auto values = RandomInputs(3, 30000, 13);
  const auto inputs = values;
  std::vector<AllReduceOptions> options(3, SmallParts());
  for (auto& o : options) {
    o.sender_timeout = absl::Seconds(1);
    o.timeout = absl::Seconds(3);
  }
  std::thread forger([&] {
    std::string body;
    // A part 0 for reducer 0 from "member 2" with a wrong-size raw payload.
    std::string payload;
    auto raw = CreateCodecFromSpec("none");
    ASSERT_TRUE((*raw)->Encode(std::vector<float>(7, 1.0f), &payload).ok());
    wire::Writer w(&body);
    w.PutBytes(swarm.group().group_id);
    w.PutU32(2);
    w.PutU32(0);
    w.PutU32(0);
    w.PutF32(1.0f);
    w.PutU8(0);   // full values
    w.PutU64(0);  // no reference
    w.PutU8(0);   // the mean
    body += payload;
    auto reply = swarm.peer(2).endpoint->Call(swarm.group().members[0].address,
                                              wire::MessageType::kAllReducePart,
                                              MakeSharedBytes(body), absl::Seconds(10));
    EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument);
  });
  // The forged part arrives first and is held until member 0's round starts.
  absl::SleepFor(absl::Milliseconds(200));
  auto reports = swarm.Run(values, options, {0, 1});
  forger.join();
  ASSERT_TRUE(reports[0].ok()) << reports[0].status();
  ASSERT_EQ(reports[0]->excluded.size(), 1u);
  EXPECT_EQ(reports[0]->excluded[0].first, 2);
  EXPECT_EQ(reports[0]->excluded[0].second.code(), absl::StatusCode::kInvalidArgument);
}

TEST(AllReduce, InvalidArgumentsAreRejectedBeforeAnythingIsSent) {
  Swarm swarm(std::vector<MemberMode>(2, MemberMode::kNode));
  std::vector<float> values(100, 1.0f);
  AllReducer& reducer = *swarm.peer(0).reducer;
  EXPECT_EQ(reducer.Run(swarm.group(), 2, absl::MakeSpan(values)).status().code(),
            absl::StatusCode::kInvalidArgument);
  values[5] = NAN;
  EXPECT_EQ(reducer.Run(swarm.group(), 0, absl::MakeSpan(values)).status().code(),
            absl::StatusCode::kInvalidArgument);
  values[5] = 1.0f;
  AllReduceOptions options;
  options.weight = -1.0f;
  EXPECT_EQ(
      reducer.Run(swarm.group(), 0, absl::MakeSpan(values), options).status().code(),
      absl::StatusCode::kInvalidArgument);
  std::vector<float> residual(99);
  options.weight = 1.0f;
  options.residual = &residual;
  EXPECT_EQ(
      reducer.Run(swarm.group(), 0, absl::MakeSpan(values), options).status().code(),
      absl::StatusCode::kInvalidArgument);
  GroupInfo no_id = swarm.group();
  no_id.group_id.clear();
  EXPECT_EQ(reducer.Run(no_id, 0, absl::MakeSpan(values)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hivemind
