// DecentralizedAverager over a real OpenDHT and real endpoints on 127.0.0.1.
#include "hivemind/averaging/averager.h"

#include <cmath>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "hivemind/dht/opendht_node.h"

namespace hivemind {
namespace {

const std::vector<size_t> kSizes = {1000, 24, 3};

std::unique_ptr<OpenDhtNode> MakeNode(const std::vector<std::string>& peers) {
  DhtOptions options;
  options.run_id = "averager";
  options.initial_peers = peers;
  auto node = OpenDhtNode::Create(options);
  EXPECT_TRUE(node.ok()) << node.status();
  return std::move(node).value();
}

struct Peer {
  std::unique_ptr<OpenDhtNode> dht;
  std::unique_ptr<DecentralizedAverager> averager;
  std::vector<float> values;  // what this peer put into its tensors
};

class AveragerSwarm : public ::testing::Test {
 protected:
  void SetUp() override { bootstrap_ = MakeNode({}); }

  static AveragerOptions Options(int target) {
    AveragerOptions options;
    options.prefix = "test.grads";
    options.target_group_size = target;
    options.min_group_size = 2;
    options.matchmaking_time = absl::Seconds(8);  // generous: CI runs tests side by side
    options.allreduce_timeout = absl::Seconds(20);
    return options;
  }

  // A peer whose tensors hold `seed`-dependent values.
  Peer* AddPeer(AveragerOptions options, float seed) {
    auto peer = std::make_unique<Peer>();
    peer->dht = MakeNode({bootstrap_->address()});
    auto averager = DecentralizedAverager::Create(peer->dht.get(), kSizes, options);
    EXPECT_TRUE(averager.ok()) << averager.status();
    peer->averager = std::move(averager).value();
    {
      TensorLock tensors = peer->averager->LockTensors();
      for (size_t i = 0; i < tensors.flat().size(); ++i) {
        tensors.flat()[i] = seed + 0.001f * static_cast<float>(i % 97);
      }
      peer->values.assign(tensors.flat().begin(), tensors.flat().end());
    }
    peers_.push_back(std::move(peer));
    return peers_.back().get();
  }

  static std::vector<float> Tensors(Peer* peer) {
    TensorLock tensors = peer->averager->LockTensors();
    return {tensors.flat().begin(), tensors.flat().end()};
  }

  // Steps every peer in `group` with `round`; expects every step to succeed.
  static std::vector<StepResult> StepAll(const std::vector<Peer*>& group,
                                         const std::string& round) {
    std::vector<StepHandle> handles;
    for (Peer* peer : group) {
      StepOptions options;
      options.round = round;
      options.gather = peer->averager->endpoint()->id();
      handles.push_back(peer->averager->Step(options));
    }
    std::vector<StepResult> results;
    for (StepHandle& handle : handles) {
      absl::StatusOr<StepResult> result = handle.Wait();
      EXPECT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(handle.stage(), StepStage::kDone);
      if (result.ok()) results.push_back(*std::move(result));
    }
    return results;
  }

  // Expects every peer of `group` to hold the mean of `expected_inputs`, and (one
  // group) the same bits.
  static void ExpectMean(const std::vector<Peer*>& group,
                         const std::vector<std::vector<float>>& expected_inputs,
                         bool bit_identical = true) {
    for (Peer* peer : group) {
      const std::vector<float> got = Tensors(peer);
      for (size_t i = 0; i < got.size(); ++i) {
        double mean = 0.0;
        for (const auto& v : expected_inputs) mean += v[i];
        mean /= static_cast<double>(expected_inputs.size());
        ASSERT_NEAR(got[i], mean, 1e-5 * (1.0 + std::abs(mean))) << "element " << i;
      }
      if (bit_identical) {
        EXPECT_EQ(got, Tensors(group[0]));
      }
    }
  }

  std::unique_ptr<OpenDhtNode> bootstrap_;
  std::vector<std::unique_ptr<Peer>> peers_;
};

TEST_F(AveragerSwarm, FourPeersReachTheMeanAndGatherEveryPayload) {
  std::vector<Peer*> group;
  std::vector<std::vector<float>> inputs;
  AveragerOptions options = Options(4);
  options.min_group_size = 4;  // one group of all four, however slow the machine
  for (int i = 0; i < 4; ++i) {
    group.push_back(AddPeer(options, static_cast<float>(i)));
    inputs.push_back(group.back()->values);
  }
  std::vector<StepResult> results = StepAll(group, "r0");
  ASSERT_EQ(results.size(), 4u);
  ExpectMean(group, inputs);
  std::set<std::string> ids;
  for (Peer* peer : group) ids.insert(peer->averager->endpoint()->id());
  for (const StepResult& result : results) {
    ASSERT_EQ(result.group.members.size(), 4u);
    EXPECT_EQ(result.attempts, 1);
    std::set<std::string> gathered;
    for (const GroupMember& m : result.group.members) {
      EXPECT_EQ(m.user_data, m.peer_id);  // each peer gathered its own id
      gathered.insert(m.user_data);
    }
    EXPECT_EQ(gathered, ids);
    for (const SpanOutcome& span : result.report.spans) {
      EXPECT_TRUE(span.status.ok());
    }
  }
}

TEST_F(AveragerSwarm, PeersJoinAndLeaveBetweenRounds) {
  Peer* a = AddPeer(Options(8), 1.0f);
  Peer* b = AddPeer(Options(8), 2.0f);
  Peer* c = AddPeer(Options(8), 3.0f);
  ASSERT_EQ(StepAll({a, b, c}, "r1").size(), 3u);
  ExpectMean({a, b, c}, {a->values, b->values, c->values});
  const std::vector<float> after_r1 = Tensors(a);

  // c leaves; d and e join with their own values.
  c->averager->Shutdown();
  Peer* d = AddPeer(Options(8), 10.0f);
  Peer* e = AddPeer(Options(8), -4.0f);
  ASSERT_EQ(StepAll({a, b, d, e}, "r2").size(), 4u);
  ExpectMean({a, b, d, e}, {after_r1, after_r1, d->values, e->values});

  // A step of the departed peer is refused, not hung.
  absl::StatusOr<StepResult> late = c->averager->Step({}).Wait();
  EXPECT_EQ(late.status().code(), absl::StatusCode::kCancelled);
}

TEST_F(AveragerSwarm, ClientAndAuxiliaryPeersTakePart) {
  Peer* a = AddPeer(Options(4), 1.0f);
  Peer* b = AddPeer(Options(4), 5.0f);
  AveragerOptions client = Options(4);
  client.mode = MemberMode::kClient;
  client.endpoint.client_mode = true;
  Peer* c = AddPeer(client, 9.0f);
  AveragerOptions aux = Options(4);
  aux.mode = MemberMode::kAuxiliary;
  Peer* x = AddPeer(aux, 1000.0f);
  std::vector<StepResult> results = StepAll({a, b, c, x}, "r0");
  ASSERT_EQ(results.size(), 4u);
  ExpectMean({a, b, c}, {a->values, b->values, c->values});
  EXPECT_EQ(Tensors(x), x->values);  // an auxiliary peer's tensors are never written
}

TEST_F(AveragerSwarm, WeightsAreApplied) {
  Peer* a = AddPeer(Options(2), 0.0f);
  Peer* b = AddPeer(Options(2), 4.0f);
  StepOptions wa, wb;
  wa.round = wb.round = "w";
  wa.weight = 3.0f;
  wb.weight = 1.0f;
  StepHandle ha = a->averager->Step(wa);
  StepHandle hb = b->averager->Step(wb);
  ASSERT_TRUE(ha.Wait().ok());
  ASSERT_TRUE(hb.Wait().ok());
  const std::vector<float> got = Tensors(a);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], 0.75f * a->values[i] + 0.25f * b->values[i], 1e-5);
  }
}

// StepOptions::values: the caller's buffer is averaged in place; the averager's own
// tensors are neither read nor written (an in-place averager holds none); an
// auxiliary peer's buffer is left as it was.
TEST_F(AveragerSwarm, InPlaceStepsAverageTheCallersBuffers) {
  Peer* a = AddPeer(Options(3), 1.0f);
  Peer* b = AddPeer(Options(3), 5.0f);
  AveragerOptions aux = Options(3);
  aux.mode = MemberMode::kAuxiliary;
  Peer* x = AddPeer(aux, 1000.0f);
  std::vector<std::vector<float>> buffers;
  for (Peer* peer : {a, b, x}) {
    std::vector<float> values(peer->values.size());
    for (size_t i = 0; i < values.size(); ++i) values[i] = 2.0f * peer->values[i];
    buffers.push_back(std::move(values));
  }
  const std::vector<float> aux_before = buffers[2];
  std::vector<StepHandle> handles;
  int k = 0;
  for (Peer* peer : {a, b, x}) {
    StepOptions step;
    step.round = "in-place";
    step.values = absl::MakeSpan(buffers[k++]);
    handles.push_back(peer->averager->Step(step));
  }
  for (StepHandle& h : handles) {
    absl::StatusOr<StepResult> result = h.Wait();
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->group.members.size(), 3u);
  }
  for (size_t i = 0; i < buffers[0].size(); ++i) {
    const float mean = a->values[i] + b->values[i];  // of 2a and 2b
    ASSERT_NEAR(buffers[0][i], mean, 1e-5 * (1.0 + std::abs(mean))) << i;
    ASSERT_EQ(buffers[1][i], buffers[0][i]) << i;
  }
  EXPECT_EQ(buffers[2], aux_before);
  EXPECT_EQ(Tensors(a), a->values);  // the tensors kept what AddPeer wrote

  std::vector<float> wrong(a->values.size() + 1);
  StepOptions bad;
  bad.values = absl::MakeSpan(wrong);
  EXPECT_EQ(a->averager->Step(bad).Wait().status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AveragerSwarm, MoshpitGroupsOfFourReachTheGlobalMeanOfEightPeersInTwoRounds) {
  std::vector<Peer*> all;
  std::vector<std::vector<float>> inputs;
  for (int i = 0; i < 8; ++i) {
    AveragerOptions options = Options(4);
    // Groups of exactly four: with min_group_size 2 a slow machine (TSan on 2 cores)
    // let two leaders each assemble a pair early, and a pair of one half never
    // reaches the global mean in two rounds.
    options.min_group_size = 4;
    options.group_bits_length = 1;
    options.initial_group_bits = i < 4 ? "0" : "1";  // a 2 x 4 grid
    all.push_back(AddPeer(options, static_cast<float>(i * i)));
    inputs.push_back(all.back()->values);
  }
  for (int round = 0; round < 2; ++round) {
    std::map<std::string, int> per_bits;
    for (Peer* peer : all) ++per_bits[peer->averager->group_bits()];
    EXPECT_EQ(per_bits, (std::map<std::string, int>{{"0", 4}, {"1", 4}}))
        << "round " << round;
    std::vector<StepHandle> handles;
    for (Peer* peer : all) {
      StepOptions step;
      step.round = absl::StrCat("m", round);
      handles.push_back(peer->averager->Step(step));
    }
    for (StepHandle& h : handles) {
      absl::StatusOr<StepResult> result = h.Wait();
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(result->group.members.size(), 4u);
    }
  }
  // Round 0 averaged each half; round 1's groups held two peers of each half.
  ExpectMean(all, inputs, /*bit_identical=*/false);
}

TEST_F(AveragerSwarm, ALonePeerFailsAtTheDeadlineOrFindsALatePartner) {
  AveragerOptions options = Options(2);
  options.matchmaking_time = absl::Seconds(2);
  Peer* a = AddPeer(options, 1.0f);
  StepOptions once;
  once.round = "alone";
  once.allow_retries = false;
  const absl::Time start = absl::Now();
  absl::StatusOr<StepResult> alone = a->averager->Step(once).Wait();
  EXPECT_EQ(alone.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));

  // With retries, a partner that arrives after the first attempt is found.
  StepOptions retry;
  retry.round = "late";
  retry.timeout = absl::Seconds(30);
  StepHandle first = a->averager->Step(retry);
  absl::SleepFor(absl::Seconds(3));  // past a's first attempt
  Peer* b = AddPeer(options, 3.0f);
  StepHandle second = b->averager->Step(retry);
  absl::StatusOr<StepResult> r1 = first.Wait();
  absl::StatusOr<StepResult> r2 = second.Wait();
  ASSERT_TRUE(r1.ok()) << r1.status();
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_GE(r1->attempts, 2);
  ExpectMean({a, b}, {a->values, b->values});
}

TEST_F(AveragerSwarm, ShutdownEndsQueuedAndRunningStepsPromptly) {
  AveragerOptions options = Options(4);
  options.matchmaking_time = absl::Seconds(3);
  Peer* a = AddPeer(options, 1.0f);
  StepOptions step;
  step.round = "never";
  step.timeout = absl::Seconds(60);
  StepHandle running = a->averager->Step(step);
  StepHandle queued = a->averager->Step(step);
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(queued.stage(), StepStage::kQueued);
  const absl::Time start = absl::Now();
  a->averager->Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));  // one attempt at most
  EXPECT_EQ(running.Wait().status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(queued.Wait().status().code(), absl::StatusCode::kCancelled);
}

TEST_F(AveragerSwarm, CancelEndsAStepThatHasNotStartedAveraging) {
  Peer* a = AddPeer(Options(4), 1.0f);
  StepOptions step;
  step.round = "cancel";
  step.timeout = absl::Seconds(60);
  StepHandle handle = a->averager->Step(step);
  absl::SleepFor(absl::Milliseconds(300));
  handle.Cancel();
  ASSERT_TRUE(handle.WaitFor(absl::Seconds(15)));
  EXPECT_EQ(handle.Wait().status().code(), absl::StatusCode::kCancelled);
}

TEST(DecentralizedAverager, RejectsBadOptionsAndSteps) {
  auto dht = MakeNode({});
  AveragerOptions options;
  EXPECT_EQ(DecentralizedAverager::Create(dht.get(), kSizes, options).status().code(),
            absl::StatusCode::kInvalidArgument);  // no prefix
  options.prefix = "p";
  EXPECT_EQ(DecentralizedAverager::Create(dht.get(), {}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecentralizedAverager::Create(dht.get(), {3, 0}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  AveragerOptions client = options;
  client.mode = MemberMode::kClient;  // without endpoint.client_mode
  EXPECT_EQ(DecentralizedAverager::Create(dht.get(), kSizes, client).status().code(),
            absl::StatusCode::kInvalidArgument);
  AveragerOptions sizes = options;
  sizes.min_group_size = 5;
  sizes.target_group_size = 4;
  EXPECT_EQ(DecentralizedAverager::Create(dht.get(), kSizes, sizes).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto averager = DecentralizedAverager::Create(dht.get(), kSizes, options);
  ASSERT_TRUE(averager.ok()) << averager.status();
  StepOptions big;
  big.gather.assign(kMaxUserDataSize + 1, 'x');
  EXPECT_EQ((*averager)->Step(big).Wait().status().code(),
            absl::StatusCode::kInvalidArgument);
  StepOptions nan;
  nan.weight = std::nanf("");
  EXPECT_EQ((*averager)->Step(nan).Wait().status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*averager)->LockTensors().tensor(1).size(), 24u);
  EXPECT_EQ(TensorSchemaHash({1, 2}), TensorSchemaHash({1, 2}));
  EXPECT_NE(TensorSchemaHash({1, 2}), TensorSchemaHash({2, 1}));
}

}  // namespace
}  // namespace hivemind
