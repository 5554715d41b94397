// CpuLocalReducer with its ranks as threads of this process: each rank is its own
// object with its own mapping and open file description, so the shared memory, the
// futexes and the liveness locks are the same as between processes.
#include "hivemind/local/cpu_local_reducer.h"

#include <unistd.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace hivemind {
namespace {

// Whether the status's message mentions `part` (the reasons are part of the contract).
::testing::AssertionResult MessageHas(const absl::Status& status,
                                      absl::string_view part) {
  if (absl::StrContains(status.message(), part)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << status << " does not mention \"" << part << "\"";
}

// A key no other test (or concurrent test process) uses.
std::string UniqueKey() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return absl::StrCat("test-", info->name(), "-", getpid());
}

CpuLocalReducerOptions Options(const std::string& key, int rank, int world,
                               size_t capacity) {
  CpuLocalReducerOptions options;
  options.key = key;
  options.rank = rank;
  options.world_size = world;
  options.capacity = capacity;
  options.join_timeout = absl::Seconds(30);
  return options;
}

// Creates the `world` ranks concurrently (the leader's Create waits for the workers).
std::vector<std::unique_ptr<CpuLocalReducer>> FormGroup(const std::string& key, int world,
                                                        size_t capacity) {
  std::vector<std::unique_ptr<CpuLocalReducer>> ranks(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      auto reducer = CpuLocalReducer::Create(Options(key, r, world, capacity));
      EXPECT_TRUE(reducer.ok()) << reducer.status();
      if (reducer.ok()) ranks[r] = *std::move(reducer);
    });
  }
  for (std::thread& t : threads) t.join();
  return ranks;
}

// Runs fn(rank) on every rank at once and returns their statuses.
std::vector<absl::Status> OnEveryRank(int world,
                                      const std::function<absl::Status(int)>& fn) {
  std::vector<absl::Status> statuses(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] { statuses[r] = fn(r); });
  }
  for (std::thread& t : threads) t.join();
  return statuses;
}

float Input(int rank, int round, size_t k) {
  return std::cos(0.01f * static_cast<float>(k) + static_cast<float>(rank)) *
             static_cast<float>(rank + 1) +
         static_cast<float>(round);
}

TEST(CpuLocalReducer, ThreadsReachTheWeightedMeanBitIdenticallyRoundAfterRound) {
  constexpr int kWorld = 3;
  constexpr size_t kNumel = 10007;
  auto ranks = FormGroup(UniqueKey(), kWorld, kNumel);
  ASSERT_NE(ranks[kWorld - 1], nullptr);
  for (int round = 0; round < 3; ++round) {
    std::vector<std::vector<float>> values(kWorld, std::vector<float>(kNumel));
    for (int r = 0; r < kWorld; ++r) {
      for (size_t k = 0; k < kNumel; ++k) values[r][k] = Input(r, round, k);
    }
    const std::vector<std::vector<float>> inputs = values;
    auto statuses = OnEveryRank(kWorld, [&](int r) {
      LocalReduceOptions call;
      call.weight = static_cast<float>(r + 1);
      return ranks[r]->AllReduce(absl::MakeSpan(values[r]), call);
    });
    for (const absl::Status& s : statuses) ASSERT_TRUE(s.ok()) << s;
    for (size_t k = 0; k < kNumel; ++k) {
      const double mean =
          (1.0 * inputs[0][k] + 2.0 * inputs[1][k] + 3.0 * inputs[2][k]) / 6.0;
      ASSERT_NEAR(values[0][k], mean, 1e-5 * (1.0 + std::abs(mean))) << "element " << k;
    }
    for (int r = 1; r < kWorld; ++r) EXPECT_EQ(values[r], values[0]) << "rank " << r;
  }
}

TEST(CpuLocalReducer,
     LeaderRunsTheSwarmStepWithTheSummedWeightAndEveryRankGetsItsResult) {
  constexpr int kWorld = 4;
  constexpr size_t kNumel = 100;
  auto ranks = FormGroup(UniqueKey(), kWorld, kNumel);
  ASSERT_NE(ranks[kWorld - 1], nullptr);
  EXPECT_TRUE(ranks[0]->is_leader());
  EXPECT_FALSE(ranks[1]->is_leader());
  std::vector<std::vector<float>> values(kWorld, std::vector<float>(kNumel));
  for (int r = 0; r < kWorld; ++r) values[r].assign(kNumel, static_cast<float>(r));
  int calls = 0;
  float seen_weight = -1.0f;
  float seen_mean = -1.0f;
  // Only the leader's step may run; the workers pass one that fails the test.
  SwarmStep leader_step = [&](absl::Span<float> average, float total_weight) {
    ++calls;
    seen_weight = total_weight;
    seen_mean = average[0];
    for (float& v : average) v += 100.0f;
    return absl::OkStatus();
  };
  SwarmStep worker_step = [](absl::Span<float>, float) {
    ADD_FAILURE() << "a worker ran the swarm step";
    return absl::OkStatus();
  };
  auto statuses = OnEveryRank(kWorld, [&](int r) {
    LocalReduceOptions call;
    call.weight = 2.0f;
    return ranks[r]->AllReduce(absl::MakeSpan(values[r]), call,
                               r == 0 ? leader_step : worker_step);
  });
  for (const absl::Status& s : statuses) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(calls, 1);
  EXPECT_FLOAT_EQ(seen_weight, 8.0f);
  EXPECT_FLOAT_EQ(seen_mean, 1.5f);  // (0 + 1 + 2 + 3) / 4
  for (int r = 0; r < kWorld; ++r)
    EXPECT_EQ(values[r], std::vector<float>(kNumel, 101.5f));
}

TEST(CpuLocalReducer, AllZeroWeightsGiveThePlainMeanAndASwarmWeightOfZero) {
  auto ranks = FormGroup(UniqueKey(), 2, 8);
  ASSERT_NE(ranks[1], nullptr);
  std::vector<std::vector<float>> values = {std::vector<float>(8, 1.0f),
                                            std::vector<float>(8, 3.0f)};
  float seen_weight = -1.0f;
  auto statuses = OnEveryRank(2, [&](int r) {
    LocalReduceOptions call;
    call.weight = 0.0f;
    return ranks[r]->AllReduce(absl::MakeSpan(values[r]), call,
                               [&](absl::Span<float>, float w) {
                                 seen_weight = w;
                                 return absl::OkStatus();
                               });
  });
  for (const absl::Status& s : statuses) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(seen_weight, 0.0f);
  EXPECT_EQ(values[0], std::vector<float>(8, 2.0f));
  EXPECT_EQ(values[1], std::vector<float>(8, 2.0f));
}

TEST(CpuLocalReducer, BadInputFailsEveryRankInTheSameCallAndTheGroupStaysUsable) {
  constexpr int kWorld = 3;
  auto ranks = FormGroup(UniqueKey(), kWorld, 16);
  ASSERT_NE(ranks[kWorld - 1], nullptr);
  struct Case {
    int bad_rank;
    size_t size;
    float weight;
    float value;
    const char* reason;
  };
  const Case cases[] = {
      {2, 7, 1.0f, 1.0f, "rank 2 passed 7 values, the leader 8"},
      {1, 8, 1.0f, std::nanf(""), "rank 1: values hold NaN or Inf"},
      {0, 8, 1.0f, INFINITY, "rank 0: values hold NaN or Inf"},
      {1, 8, -1.0f, 1.0f, "rank 1: weight -1 is not finite and >= 0"},
      {2, 17, 1.0f, 1.0f, "rank 2: passed 17 values, more than the capacity 16"},
  };
  for (const Case& c : cases) {
    std::vector<std::vector<float>> values(kWorld, std::vector<float>(8, 5.0f));
    values[c.bad_rank].assign(c.size, c.value);
    const std::vector<std::vector<float>> before = values;
    auto statuses = OnEveryRank(kWorld, [&](int r) {
      LocalReduceOptions call;
      call.weight = r == c.bad_rank ? c.weight : 1.0f;
      return ranks[r]->AllReduce(absl::MakeSpan(values[r]), call);
    });
    for (int r = 0; r < kWorld; ++r) {
      EXPECT_EQ(statuses[r].code(), absl::StatusCode::kInvalidArgument) << statuses[r];
      EXPECT_TRUE(MessageHas(statuses[r], c.reason));
    }
    if (!std::isnan(c.value)) {
      EXPECT_EQ(values, before);  // nobody's values changed
    }
  }
  // The group is still in step: a good round succeeds.
  std::vector<std::vector<float>> values = {std::vector<float>(8, 0.0f),
                                            std::vector<float>(8, 3.0f),
                                            std::vector<float>(8, 6.0f)};
  auto statuses = OnEveryRank(
      kWorld, [&](int r) { return ranks[r]->AllReduce(absl::MakeSpan(values[r])); });
  for (int r = 0; r < kWorld; ++r) {
    EXPECT_TRUE(statuses[r].ok()) << statuses[r];
    EXPECT_EQ(values[r], std::vector<float>(8, 3.0f));
  }
}

TEST(CpuLocalReducer, SwarmStepErrorReachesEveryRankWithWhatTheStepLeft) {
  auto ranks = FormGroup(UniqueKey(), 3, 4);
  ASSERT_NE(ranks[2], nullptr);
  std::vector<std::vector<float>> values = {std::vector<float>(4, 0.0f),
                                            std::vector<float>(4, 1.0f),
                                            std::vector<float>(4, 2.0f)};
  auto statuses = OnEveryRank(3, [&](int r) {
    return ranks[r]->AllReduce(absl::MakeSpan(values[r]), {},
                               [](absl::Span<float>, float) {
                                 return absl::DeadlineExceededError("no group formed");
                               });
  });
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(statuses[r].code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_TRUE(MessageHas(statuses[r], "swarm step: no group formed"));
    EXPECT_EQ(values[r], std::vector<float>(4, 1.0f));  // the local mean
  }
  // Not a broken group: the next round works.
  auto next = OnEveryRank(
      3, [&](int r) { return ranks[r]->AllReduce(absl::MakeSpan(values[r])); });
  for (const absl::Status& s : next) EXPECT_TRUE(s.ok()) << s;
}

TEST(CpuLocalReducer, CreateRejectsBadOptions) {
  const std::string key = UniqueKey();
  EXPECT_EQ(CpuLocalReducer::Create(Options("", 0, 1, 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CpuLocalReducer::Create(Options("a/b", 0, 1, 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CpuLocalReducer::Create(Options(key, 2, 2, 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CpuLocalReducer::Create(Options(key, 0, 65, 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CpuLocalReducer::Create(Options(key, 0, 1, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A group of one forms at once and averages with itself.
  auto alone = CpuLocalReducer::Create(Options(key, 0, 1, 4));
  ASSERT_TRUE(alone.ok()) << alone.status();
  std::vector<float> values = {1, 2, 3};
  EXPECT_TRUE((*alone)->AllReduce(absl::MakeSpan(values)).ok());
  EXPECT_EQ(values, (std::vector<float>{1, 2, 3}));
}

TEST(CpuLocalReducer, LeaderTimesOutNamingTheRanksThatDidNotJoin) {
  CpuLocalReducerOptions options = Options(UniqueKey(), 0, 3, 4);
  options.join_timeout = absl::Milliseconds(300);
  auto leader = CpuLocalReducer::Create(options);
  EXPECT_EQ(leader.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(MessageHas(leader.status(), "rank(s) 1, 2 did not join"));
  // A worker without a leader times out too.
  options.rank = 1;
  auto worker = CpuLocalReducer::Create(options);
  EXPECT_EQ(worker.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(CpuLocalReducer, DuplicateRankAndMismatchedCapacityAreRefused) {
  const std::string key = UniqueKey();
  absl::StatusOr<std::unique_ptr<CpuLocalReducer>> leader;
  std::thread leader_thread(
      [&] { leader = CpuLocalReducer::Create(Options(key, 0, 3, 4)); });
  auto first = CpuLocalReducer::Create(Options(key, 1, 3, 4));
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = CpuLocalReducer::Create(Options(key, 1, 3, 4));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists) << second.status();
  auto other_capacity = CpuLocalReducer::Create(Options(key, 2, 3, 5));
  EXPECT_EQ(other_capacity.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(other_capacity.status(), "capacity 4"));
  auto third = CpuLocalReducer::Create(Options(key, 2, 3, 4));
  ASSERT_TRUE(third.ok()) << third.status();
  leader_thread.join();
  EXPECT_TRUE(leader.ok()) << leader.status();
}

TEST(CpuLocalReducer, LeftWorkerFailsTheLeaderAtOnceAndBreaksTheGroup) {
  auto ranks = FormGroup(UniqueKey(), 2, 4);
  ASSERT_NE(ranks[1], nullptr);
  ranks[1].reset();  // leaves the group
  std::vector<float> values(4, 1.0f);
  LocalReduceOptions call;
  call.timeout = absl::Seconds(60);
  const absl::Time start = absl::Now();
  absl::Status status = ranks[0]->AllReduce(absl::MakeSpan(values), call);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_TRUE(MessageHas(status, "rank 1 died or left"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));  // not the 60 s deadline
  status = ranks[0]->AllReduce(absl::MakeSpan(values), call);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_TRUE(MessageHas(status, "rank 1 died or left"));
}

TEST(CpuLocalReducer, LateWorkerTimesTheLeaderOutAndThenLearnsWhy) {
  auto ranks = FormGroup(UniqueKey(), 2, 4);
  ASSERT_NE(ranks[1], nullptr);
  std::vector<float> values(4, 1.0f);
  LocalReduceOptions call;
  call.timeout = absl::Milliseconds(200);
  absl::Status status = ranks[0]->AllReduce(absl::MakeSpan(values), call);
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  // The late worker gets the leader's verdict for that round at once.
  call.timeout = absl::Seconds(60);
  const absl::Time start = absl::Now();
  status = ranks[1]->AllReduce(absl::MakeSpan(values), call);
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_TRUE(MessageHas(status, "leader: local worker rank 1"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(ranks[1]->AllReduce(absl::MakeSpan(values), call).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace hivemind
