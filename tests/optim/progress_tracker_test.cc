// ProgressTracker: the record codec and the estimate on their own, then three
// trackers on a real OpenDHT swarm on 127.0.0.1.
#include "hivemind/optim/progress_tracker.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "hivemind/dht/opendht_node.h"
#include "optim/progress.h"
#include "util/mutex.h"

namespace hivemind {
namespace {

using internal::EncodeProgressRecord;
using internal::EstimateGlobalProgress;
using internal::ParseProgressRecord;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

PeerProgress Peer(const std::string& id, uint64_t epoch, uint64_t samples, double sps,
                  absl::Time time = kT0, bool client = false) {
  PeerProgress p;
  p.peer_id = id;
  p.epoch = epoch;
  p.samples_accumulated = samples;
  p.samples_per_second = sps;
  p.time = time;
  p.client_mode = client;
  return p;
}

// Durations computed through doubles: equal to within a microsecond.
void ExpectNear(absl::Duration actual, absl::Duration expected) {
  EXPECT_LT(absl::AbsDuration(actual - expected), absl::Microseconds(1))
      << actual << " vs " << expected;
}

internal::EstimateParams Params(uint64_t target) {
  internal::EstimateParams p;
  p.target_batch_size = target;
  p.min_refresh_period = absl::Milliseconds(500);
  p.max_refresh_period = absl::Seconds(10);
  p.default_refresh_period = absl::Seconds(3);
  p.expected_drift_peers = 3;
  p.expected_drift_rate = 0.2;
  return p;
}

TEST(ProgressRecord, RoundTrips) {
  const PeerProgress in = Peer("peer-a", 7, 1234, 56.5, kT0, /*client=*/true);
  const std::string value = EncodeProgressRecord(in, /*departed=*/false);
  EXPECT_EQ(value.size(), 34u);
  auto out = ParseProgressRecord("peer-a", value);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_FALSE(out->departed);
  EXPECT_EQ(out->progress.peer_id, "peer-a");
  EXPECT_EQ(out->progress.epoch, 7u);
  EXPECT_EQ(out->progress.samples_accumulated, 1234u);
  EXPECT_EQ(out->progress.samples_per_second, 56.5);
  EXPECT_EQ(out->progress.time, kT0);
  EXPECT_TRUE(out->progress.client_mode);
  auto departed = ParseProgressRecord("peer-a", EncodeProgressRecord(in, true));
  ASSERT_TRUE(departed.ok());
  EXPECT_TRUE(departed->departed);
}

TEST(ProgressRecord, RejectsGarbage) {
  const std::string good = EncodeProgressRecord(Peer("p", 1, 2, 3.0), false);
  auto expect_data_loss = [](const std::string& value) {
    EXPECT_EQ(ParseProgressRecord("p", value).status().code(),
              absl::StatusCode::kDataLoss);
  };
  for (size_t n = 0; n < good.size(); ++n) expect_data_loss(good.substr(0, n));
  expect_data_loss(good + "x");               // trailing byte
  expect_data_loss("\x02" + good.substr(1));  // unknown version
  std::string flags = good;
  flags[1] = 4;  // reserved flag bit
  expect_data_loss(flags);
  std::string epoch = good;
  epoch[2 + 7] = '\x40';  // epoch = 2^62 + 1
  expect_data_loss(epoch);
  std::string nan = good;
  for (int i = 18; i < 26; ++i) nan[i] = '\xff';  // samples_per_second = NaN
  expect_data_loss(nan);
  std::string negative = EncodeProgressRecord(Peer("p", 1, 2, 1.0), false);
  negative[25] = static_cast<char>(negative[25] | 0x80);  // -1.0
  expect_data_loss(negative);
  expect_data_loss("garbage that is not a progress record");
}

TEST(ProgressRecord, LiveProgressDropsForgedMalformedAndDeparted) {
  const absl::Time exp = kT0 + absl::Seconds(60);
  std::vector<DhtRecord> records = {
      {"a", EncodeProgressRecord(Peer("a", 1, 2, 3), false), "a", kT0, exp},
      {"b", EncodeProgressRecord(Peer("b", 1, 2, 3), false), "c", kT0, exp},  // forged
      {"d", "junk", "d", kT0, exp},
      {"e", EncodeProgressRecord(Peer("e", 1, 2, 3), true), "e", kT0, exp},  // departed
  };
  auto live = internal::LiveProgress(records);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].peer_id, "a");
}

TEST(PerformanceEma, MeasuresASteadyRate) {
  internal::PerformanceEma ema(0.1, kT0);
  EXPECT_EQ(ema.samples_per_second(), 0.0);
  absl::Time t = kT0;
  for (int i = 0; i < 20; ++i) {
    t += absl::Milliseconds(500);
    ema.Update(10, t);  // 20 samples/s
  }
  EXPECT_NEAR(ema.samples_per_second(), 20.0, 1e-6);
  ema.ResetTimer(t + absl::Hours(1));  // a pause does not count
  ema.Update(10, t + absl::Hours(1) + absl::Milliseconds(500));
  EXPECT_NEAR(ema.samples_per_second(), 20.0, 1e-6);
}

TEST(EstimateGlobalProgress, SumsSamplesAtTheGlobalEpochOnly) {
  const auto g = EstimateGlobalProgress(
      {Peer("b", 3, 40, 10), Peer("c", 2, 500, 10), Peer("d", 9, 0, 5, kT0, true)},
      Peer("a", 3, 20, 10), Params(100), kT0);
  EXPECT_EQ(g.epoch, 3u);  // the client at epoch 9 does not set the epoch
  EXPECT_EQ(g.samples_accumulated, 60u);
  EXPECT_EQ(g.num_peers, 4);
  EXPECT_EQ(g.num_clients, 1);
  EXPECT_DOUBLE_EQ(g.samples_per_second, 35.0);  // every peer's throughput counts
  ExpectNear(g.eta_next_epoch - kT0, absl::Seconds(40.0 / 35.0));
}

TEST(EstimateGlobalProgress, ExtrapolatesFromEachRecordsTime) {
  const absl::Time now = kT0 + absl::Seconds(2);
  const auto g = EstimateGlobalProgress({Peer("b", 0, 10, 10, kT0)},
                                        Peer("a", 0, 10, 10, now), Params(100), now);
  EXPECT_EQ(g.samples_accumulated, 20u);  // as reported
  // b has gathered about 20 more since it reported: 60 remain at 20 samples/s.
  ExpectNear(g.eta_next_epoch - now, absl::Seconds(3));
}

TEST(EstimateGlobalProgress, EtaAndRefreshPeriod) {
  // Nobody has a throughput yet: no estimate, the slowest refresh.
  auto g =
      EstimateGlobalProgress({Peer("b", 0, 0, 0)}, Peer("a", 0, 0, 0), Params(100), kT0);
  EXPECT_EQ(g.eta_next_epoch, absl::InfiniteFuture());
  EXPECT_EQ(g.next_fetch_time, kT0 + absl::Seconds(10));
  // Alone: the default period.
  g = EstimateGlobalProgress({}, Peer("a", 0, 0, 10), Params(100), kT0);
  ExpectNear(g.eta_next_epoch - kT0, absl::Seconds(10));
  EXPECT_EQ(g.next_fetch_time, kT0 + absl::Seconds(3));
  // Two peers, 4 s to go: 4 s * 2 / max(2 + 3, 2.4) = 1.6 s.
  g = EstimateGlobalProgress({Peer("b", 0, 10, 10)}, Peer("a", 0, 10, 10), Params(100),
                             kT0);
  ExpectNear(g.next_fetch_time - kT0, absl::Milliseconds(1600));
  // Target reached: ETA now, the fastest refresh.
  g = EstimateGlobalProgress({Peer("b", 0, 60, 10)}, Peer("a", 0, 60, 10), Params(100),
                             kT0);
  EXPECT_EQ(g.eta_next_epoch, kT0);
  EXPECT_EQ(g.next_fetch_time, kT0 + absl::Milliseconds(500));
}

// A clock that moves only when told to (shared by every tracker of a test).
class ManualClock {
 public:
  absl::Time Now() {
    internal::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    internal::MutexLock lock(&mu_);
    now_ += d;
  }
  std::function<absl::Time()> AsFunction() {
    return [this] { return Now(); };
  }

 private:
  internal::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_) = absl::Now();
};

std::unique_ptr<OpenDhtNode> Node(std::vector<std::string> initial_peers = {}) {
  DhtOptions options;
  options.run_id = "progress-test";
  options.initial_peers = std::move(initial_peers);
  auto node = OpenDhtNode::Create(options);
  EXPECT_TRUE(node.ok()) << node.status();
  return node.ok() ? std::move(node).value() : nullptr;
}

// Polls `condition` until it holds or a generous deadline passes.
bool Eventually(const std::function<bool()>& condition,
                absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

class TrackerSwarm : public ::testing::Test {
 protected:
  void SetUp() override {
    bootstrap_ = Node();
    ASSERT_NE(bootstrap_, nullptr);
    for (int i = 0; i < 3; ++i) {
      nodes_.push_back(Node({bootstrap_->address()}));
      ASSERT_NE(nodes_.back(), nullptr);
    }
  }

  ProgressTrackerOptions Options(uint64_t target) {
    ProgressTrackerOptions options;
    options.prefix = "run";
    options.target_batch_size = target;
    options.min_refresh_period = absl::Milliseconds(100);
    options.max_refresh_period = absl::Milliseconds(500);
    options.default_refresh_period = absl::Milliseconds(200);
    return options;
  }

  void StartTrackers(const ProgressTrackerOptions& options) {
    for (auto& node : nodes_) {
      auto tracker = ProgressTracker::Create(node.get(), options);
      ASSERT_TRUE(tracker.ok()) << tracker.status();
      trackers_.push_back(std::move(tracker).value());
    }
  }

  // Waits until every tracker (but `skip`) sees `samples` at `epoch` from `peers`.
  bool AllSee(uint64_t epoch, uint64_t samples, int peers, int skip = -1) {
    return Eventually([&] {
      for (int i = 0; i < static_cast<int>(trackers_.size()); ++i) {
        if (i == skip) continue;
        const GlobalProgress g = trackers_[i]->global_progress();
        if (g.epoch != epoch || g.samples_accumulated != samples ||
            g.num_peers != peers) {
          return false;
        }
      }
      return true;
    });
  }

  // Destroyed in reverse: trackers first, then the clock and the nodes they use.
  ManualClock clock_;
  std::unique_ptr<OpenDhtNode> bootstrap_;
  std::vector<std::unique_ptr<OpenDhtNode>> nodes_;
  std::vector<std::unique_ptr<ProgressTracker>> trackers_;
};

TEST(ProgressTracker, RejectsBadOptions) {
  auto node = Node();
  ASSERT_NE(node, nullptr);
  ProgressTrackerOptions options;
  options.prefix = "run";
  options.target_batch_size = 10;
  EXPECT_EQ(ProgressTracker::Create(nullptr, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.target_batch_size = 0;
  EXPECT_EQ(ProgressTracker::Create(node.get(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.target_batch_size = 10;
  options.min_refresh_period = absl::Seconds(20);
  EXPECT_EQ(ProgressTracker::Create(node.get(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadProgress(node.get(), "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// The clock stands still between steps, so the estimates are exact: each peer
// reports 10 samples per (virtual) second.
TEST_F(TrackerSwarm, ReadyExactlyWhenTheSwarmReachesTheTarget) {
  ProgressTrackerOptions options = Options(90);
  options.clock = clock_.AsFunction();
  StartTrackers(options);
  std::vector<absl::Duration> etas;
  for (uint64_t samples : {10, 20}) {
    clock_.Advance(absl::Seconds(1));
    for (auto& t : trackers_) t->ReportLocalProgress(0, samples);
    ASSERT_TRUE(AllSee(0, 3 * samples, 3))
        << trackers_[0]->global_progress().samples_accumulated;
    for (auto& t : trackers_) {
      EXPECT_FALSE(t->ready_to_update_epoch());
      EXPECT_NEAR(t->global_progress().samples_per_second, 30.0, 1e-6);
    }
    etas.push_back(trackers_[0]->EstimatedTimeToNextEpoch());
  }
  // 60 then 30 samples to go at 30 samples/s: finite, and shrinking.
  ExpectNear(etas[0], absl::Seconds(2));
  ExpectNear(etas[1], absl::Seconds(1));

  // One sample short of the target: not ready (the clock stands still, so the
  // estimate does not run ahead of the reports).
  clock_.Advance(absl::Seconds(1));
  trackers_[0]->ReportLocalProgress(0, 30);
  trackers_[1]->ReportLocalProgress(0, 30);
  trackers_[2]->ReportLocalProgress(0, 29);
  ASSERT_TRUE(AllSee(0, 89, 3));
  for (auto& t : trackers_) {
    EXPECT_FALSE(t->ready_to_update_epoch());
    EXPECT_GT(t->EstimatedTimeToNextEpoch(), absl::ZeroDuration());
  }
  EXPECT_EQ(trackers_[0]->WaitUntilReady(clock_.Now()).code(),
            absl::StatusCode::kDeadlineExceeded);
  trackers_[2]->ReportLocalProgress(0, 30);
  ASSERT_TRUE(AllSee(0, 90, 3));
  for (auto& t : trackers_) {
    EXPECT_TRUE(t->ready_to_update_epoch());
    EXPECT_EQ(t->EstimatedTimeToNextEpoch(), absl::ZeroDuration());
    EXPECT_TRUE(t->WaitUntilReady(clock_.Now()).ok());
  }

  auto records = ReadProgress(bootstrap_.get(), "run");
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 3u);
  for (const PeerProgress& p : *records) {
    EXPECT_EQ(p.samples_accumulated, 30u);
    EXPECT_GT(p.samples_per_second, 5.0);
  }
}

TEST(ProgressTracker, ALonePeerSlowerThanItsEstimateIsNotReadyBeforeTheTarget) {
  // Its own samples are known exactly; only other peers' progress is extrapolated.
  // (Extrapolating its own made a slow step end the epoch early.)
  ManualClock clock;
  auto node = Node();
  ASSERT_NE(node, nullptr);
  ProgressTrackerOptions options;
  options.prefix = "lone";
  options.target_batch_size = 40;
  options.clock = clock.AsFunction();
  auto tracker = std::move(ProgressTracker::Create(node.get(), options)).value();
  for (uint64_t samples : {10, 20, 30}) {
    clock.Advance(absl::Seconds(1));
    tracker->ReportLocalProgress(0, samples);
  }
  clock.Advance(absl::Seconds(30));  // far past the predicted time of the 40th sample
  EXPECT_FALSE(tracker->ready_to_update_epoch());
  EXPECT_EQ(tracker->WaitUntilReady(clock.Now()).code(),
            absl::StatusCode::kDeadlineExceeded);
  clock.Advance(absl::Seconds(1));
  tracker->ReportLocalProgress(0, 40);
  EXPECT_TRUE(tracker->ready_to_update_epoch());
}

TEST_F(TrackerSwarm, OthersProgressIsExtrapolatedFromTheirLastReports) {
  ProgressTrackerOptions options = Options(90);
  options.clock = clock_.AsFunction();
  StartTrackers(options);
  for (uint64_t samples : {10, 20}) {
    clock_.Advance(absl::Seconds(1));
    for (auto& t : trackers_) t->ReportLocalProgress(0, samples);
    ASSERT_TRUE(AllSee(0, 3 * samples, 3));
  }
  EXPECT_FALSE(trackers_[0]->ready_to_update_epoch());  // 60 of 90
  // Peer 0 stalls; the others report nothing new for 2 s, but at 10 samples/s each
  // they have probably made 20 + 20 more by now: 20 + 40 + 40 >= 90.
  clock_.Advance(absl::Seconds(2));
  EXPECT_TRUE(trackers_[0]->ready_to_update_epoch());
}

TEST_F(TrackerSwarm, PeersAtAnOlderEpochDoNotCount) {
  ProgressTrackerOptions options = Options(1000);
  options.clock = clock_.AsFunction();
  StartTrackers(options);
  clock_.Advance(absl::Seconds(1));
  trackers_[0]->UpdateEpoch(1);
  clock_.Advance(absl::Seconds(1));
  trackers_[0]->ReportLocalProgress(1, 10);
  trackers_[1]->ReportLocalProgress(0, 20);
  trackers_[2]->ReportLocalProgress(0, 20);
  ASSERT_TRUE(AllSee(1, 10, 3));
  EXPECT_FALSE(trackers_[0]->ready_to_update_epoch());
  EXPECT_TRUE(trackers_[1]->ready_to_update_epoch());  // behind: catch up now
  EXPECT_TRUE(trackers_[2]->ready_to_update_epoch());
  trackers_[1]->UpdateEpoch(1);
  EXPECT_EQ(trackers_[1]->global_progress().epoch, 1u);
  EXPECT_EQ(trackers_[1]->local_progress().samples_accumulated, 0u);
  EXPECT_FALSE(trackers_[1]->ready_to_update_epoch());
}

TEST_F(TrackerSwarm, ADeadPeersRecordStopsCountingWhenItExpires) {
  ProgressTrackerOptions options = Options(1000);
  options.metadata_expiration = absl::Seconds(4);
  options.announce_departure = false;  // the peer crashes
  StartTrackers(options);
  for (uint64_t i = 0; i < 3; ++i) trackers_[i]->ReportLocalProgress(0, 10 * (i + 1));
  ASSERT_TRUE(AllSee(0, 60, 3));
  // Live peers keep their records alive past the expiration.
  absl::SleepFor(absl::Seconds(5));
  ASSERT_TRUE(AllSee(0, 60, 3));
  const absl::Time died = absl::Now();
  trackers_[2].reset();
  ASSERT_TRUE(AllSee(0, 30, 2, /*skip=*/2));
  EXPECT_GE(absl::Now() - died, absl::Seconds(1));  // it was counted until it expired
}

TEST_F(TrackerSwarm, ADepartingPeerStopsCountingAtOnce) {
  ProgressTrackerOptions options = Options(1000);
  StartTrackers(options);  // records valid for 60 s
  for (uint64_t i = 0; i < 3; ++i) trackers_[i]->ReportLocalProgress(0, 10 * (i + 1));
  ASSERT_TRUE(AllSee(0, 60, 3));
  trackers_[2]->Shutdown();
  EXPECT_EQ(trackers_[2]->WaitUntilReady(absl::InfiniteFuture()).code(),
            absl::StatusCode::kCancelled);
  ASSERT_TRUE(AllSee(0, 30, 2, /*skip=*/2));
}

// With the real clock: no estimate before any throughput is known, then a finite
// one of the right order (each peer does about 100 samples/s).
TEST_F(TrackerSwarm, EtaIsFiniteWithARealClock) {
  StartTrackers(Options(100000));
  EXPECT_EQ(trackers_[0]->EstimatedTimeToNextEpoch(), absl::InfiniteDuration());
  for (uint64_t samples = 10; samples <= 100; samples += 10) {
    absl::SleepFor(absl::Milliseconds(100));
    for (auto& t : trackers_) t->ReportLocalProgress(0, samples);
  }
  ASSERT_TRUE(AllSee(0, 300, 3));
  const absl::Duration eta = trackers_[0]->EstimatedTimeToNextEpoch();
  EXPECT_GT(eta, absl::Seconds(30)) << eta;  // ~330 s at 300 samples/s
  EXPECT_LT(eta, absl::Hours(1)) << eta;
  EXPECT_FALSE(trackers_[0]->ready_to_update_epoch());
}

TEST_F(TrackerSwarm, WaitUntilReadyWakesWhenTheTargetIsReached) {
  StartTrackers(Options(30));
  EXPECT_EQ(trackers_[0]->WaitUntilReady(absl::Now() + absl::Milliseconds(200)).code(),
            absl::StatusCode::kDeadlineExceeded);
  for (auto& t : trackers_) t->ReportLocalProgress(0, 10);
  EXPECT_TRUE(trackers_[0]->WaitUntilReady(absl::Now() + absl::Seconds(30)).ok());
  EXPECT_GE(trackers_[0]->global_progress().samples_accumulated, 10u);
}

}  // namespace
}  // namespace hivemind
