// The CPU local reducer with real worker processes (tests/local/local_worker.cc):
//  - 2, 3 and 4 workers form a local group whose leader is one peer of a swarm of
//    DecentralizedAveragers over a real OpenDHT on 127.0.0.1; the result must match a
//    plain swarm in which every worker is a peer of its own;
//  - a worker or the leader SIGKILLed while the others wait in AllReduce: the others
//    fail with kUnavailable long before their deadline.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "hivemind/averaging/averager.h"
#include "hivemind/dht/opendht_node.h"
#include "tests/child_process.h"
#include "tests/local/worker_input.h"

namespace hivemind {
namespace {

using testing_util::WorkerInput;

constexpr size_t kNumel = 5000;

// Lines of a child's stdout, each read with a deadline (a hung child fails the test
// instead of hanging it).
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}

  // The next line without its '\n'; "" at end of file or after `timeout`.
  std::string Next(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      const size_t newline = buffer_.find('\n');
      if (newline != std::string::npos) {
        std::string line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        return line;
      }
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return "";
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) <= 0)
        continue;
      char chunk[4096];
      const ssize_t n = read(fd_, chunk, sizeof(chunk));
      if (n <= 0) return "";
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
  std::string buffer_;
};

// A worker process; killed and reaped on destruction if still running.
class WorkerProcess {
 public:
  explicit WorkerProcess(const std::vector<std::string>& args)
      : child_(testing_util::SpawnChild(HIVEMIND_LOCAL_WORKER, args)),
        out_(fileno(child_.from)) {}
  ~WorkerProcess() {
    if (!reaped_) Kill();
    fclose(child_.to);
    fclose(child_.from);
  }
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  std::string Line(absl::Duration timeout = absl::Seconds(90)) {
    return out_.Next(timeout);
  }
  void Kill() {
    kill(child_.pid, SIGKILL);
    waitpid(child_.pid, nullptr, 0);
    reaped_ = true;
  }
  int Wait() {
    int status = 0;
    waitpid(child_.pid, &status, 0);
    reaped_ = true;
    return status;
  }

 private:
  testing_util::Child child_;
  LineReader out_;
  bool reaped_ = false;
};

struct WorkerSpec {
  int seed;
  float weight;
};

std::unique_ptr<OpenDhtNode> MakeNode(const std::vector<std::string>& peers) {
  DhtOptions options;
  options.run_id = "local";  // as local_worker's node
  options.initial_peers = peers;
  auto node = OpenDhtNode::Create(options);
  EXPECT_TRUE(node.ok()) << node.status();
  return std::move(node).value();
}

struct SwarmPeer {
  std::unique_ptr<OpenDhtNode> dht;
  std::unique_ptr<DecentralizedAverager> averager;
};

class LocalGroupProcesses : public ::testing::Test {
 protected:
  void SetUp() override { bootstrap_ = MakeNode({}); }

  std::string Key() const {
    return absl::StrCat("proc-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                        "-", getpid());
  }
  static std::string OutputFile(const std::string& key, int rank) {
    return absl::StrCat(::testing::TempDir(), key, "-rank", rank, ".bin");
  }

  // Starts worker `rank` of a group of `world` with `mode` (see local_worker.cc).
  std::unique_ptr<WorkerProcess> StartWorker(const std::string& key, int rank, int world,
                                             const WorkerSpec& spec,
                                             const std::string& mode,
                                             const std::string& round = "r0") {
    std::vector<std::string> args = {
        "key=" + key,
        absl::StrCat("rank=", rank),
        absl::StrCat("world=", world),
        absl::StrCat("numel=", kNumel),
        absl::StrCat("seed=", spec.seed),
        absl::StrCat("weight=", spec.weight),
        "out=" + OutputFile(key, rank),
        "mode=" + mode,
        "timeout_ms=60000",
        "bootstrap=" + bootstrap_->address(),
        "prefix=local.grads",
        "round=" + round,
        "target=3",
    };
    return std::make_unique<WorkerProcess>(args);
  }

  // A swarm peer in this process holding worker `spec`'s input.
  SwarmPeer* AddPeer(const std::string& prefix, int target, const WorkerSpec& spec) {
    auto peer = std::make_unique<SwarmPeer>();
    peer->dht = MakeNode({bootstrap_->address()});
    auto averager = DecentralizedAverager::Create(
        peer->dht.get(), {kNumel}, testing_util::SwarmOptions(prefix, target));
    EXPECT_TRUE(averager.ok()) << averager.status();
    peer->averager = *std::move(averager);
    TensorLock tensors = peer->averager->LockTensors();
    for (size_t k = 0; k < kNumel; ++k) tensors.flat()[k] = WorkerInput(spec.seed, k);
    peers_.push_back(std::move(peer));
    return peers_.back().get();
  }

  // Steps every peer in round "r0" with its spec's weight; returns their tensors.
  static std::vector<std::vector<float>> StepAll(const std::vector<SwarmPeer*>& peers,
                                                 const std::vector<WorkerSpec>& specs) {
    std::vector<StepHandle> handles;
    for (size_t i = 0; i < peers.size(); ++i) {
      StepOptions options;
      options.round = "r0";
      options.weight = specs[i].weight;
      handles.push_back(peers[i]->averager->Step(options));
    }
    std::vector<std::vector<float>> results;
    for (size_t i = 0; i < peers.size(); ++i) {
      absl::StatusOr<StepResult> result = handles[i].Wait();
      EXPECT_TRUE(result.ok()) << result.status();
      TensorLock tensors = peers[i]->averager->LockTensors();
      results.emplace_back(tensors.flat().begin(), tensors.flat().end());
    }
    return results;
  }

  static std::vector<float> ReadOutput(const std::string& path) {
    std::vector<float> values(kNumel);
    std::ifstream(path, std::ios::binary)
        .read(reinterpret_cast<char*>(values.data()),
              static_cast<std::streamsize>(values.size() * sizeof(float)));
    std::remove(path.c_str());
    return values;
  }

  // `workers` local workers feeding one swarm peer, plus two single-worker peers,
  // against a plain swarm of all `workers` + 2 workers.
  void LocalGroupMatchesPlainSwarm(int workers);

  std::unique_ptr<OpenDhtNode> bootstrap_;
  std::vector<std::unique_ptr<SwarmPeer>> peers_;
};

void LocalGroupProcesses::LocalGroupMatchesPlainSwarm(int workers) {
  std::vector<WorkerSpec> specs;
  for (int r = 0; r < workers; ++r) specs.push_back({r, 1.0f + static_cast<float>(r)});
  const std::vector<WorkerSpec> others = {{10, 1.5f}, {11, 0.5f}};

  // The local group (processes) and two swarm peers average in round "r0".
  const std::string key = Key();
  std::vector<std::unique_ptr<WorkerProcess>> group;
  for (int r = 0; r < workers; ++r) {
    group.push_back(StartWorker(key, r, workers, specs[r], r == 0 ? "swarm" : "local"));
  }
  for (int r = 0; r < workers; ++r) ASSERT_EQ(group[r]->Line(), "JOINED") << "rank " << r;
  const std::vector<std::vector<float>> peer_results = StepAll(
      {AddPeer("local.grads", 3, others[0]), AddPeer("local.grads", 3, others[1])},
      others);
  std::vector<std::vector<float>> local_results;
  for (int r = 0; r < workers; ++r) {
    ASSERT_EQ(group[r]->Line(), "ENTER") << "rank " << r;
    ASSERT_EQ(group[r]->Line(), "DONE OK") << "rank " << r;
    EXPECT_EQ(group[r]->Wait(), 0);
    local_results.push_back(ReadOutput(OutputFile(key, r)));
  }

  // A plain swarm: every worker a peer of its own.
  std::vector<WorkerSpec> all = specs;
  all.insert(all.end(), others.begin(), others.end());
  std::vector<SwarmPeer*> plain;
  for (const WorkerSpec& spec : all) {
    plain.push_back(AddPeer("plain.grads", static_cast<int>(all.size()), spec));
  }
  const std::vector<std::vector<float>> plain_results = StepAll(plain, all);
  ASSERT_EQ(plain_results.size(), all.size());

  double total_weight = 0.0;
  for (const WorkerSpec& spec : all) total_weight += spec.weight;
  for (size_t k = 0; k < kNumel; ++k) {
    double mean = 0.0;
    for (const WorkerSpec& spec : all) mean += spec.weight * WorkerInput(spec.seed, k);
    mean /= total_weight;
    const double tolerance = 1e-5 * (1.0 + std::abs(mean));
    ASSERT_NEAR(local_results[0][k], mean, tolerance) << "element " << k;
    ASSERT_NEAR(local_results[0][k], plain_results[0][k], tolerance) << "element " << k;
    ASSERT_NEAR(peer_results[0][k], plain_results[0][k], tolerance) << "element " << k;
  }
  // Every local worker got the leader's bits.
  for (int r = 1; r < workers; ++r)
    EXPECT_EQ(local_results[r], local_results[0]) << "rank " << r;
}

TEST_F(LocalGroupProcesses, TwoWorkersFeedingOnePeerMatchAPlainSwarm) {
  LocalGroupMatchesPlainSwarm(2);
}

TEST_F(LocalGroupProcesses, ThreeWorkersFeedingOnePeerMatchAPlainSwarm) {
  LocalGroupMatchesPlainSwarm(3);
}

TEST_F(LocalGroupProcesses, FourWorkersFeedingOnePeerMatchAPlainSwarm) {
  LocalGroupMatchesPlainSwarm(4);
}

// A group of three in which rank `victim` runs `victim_mode`: once every other rank is
// inside AllReduce, the victim is SIGKILLed; the others must fail with kUnavailable
// naming `reason`, well before their 60 s deadline.
class LocalGroupKills : public LocalGroupProcesses {
 protected:
  void KillDuringAllReduce(int victim, const std::string& victim_mode,
                           const std::string& reason) {
    const std::string key = Key();
    std::vector<std::unique_ptr<WorkerProcess>> group;
    for (int r = 0; r < 3; ++r) {
      group.push_back(StartWorker(key, r, 3, {r, 1.0f},
                                  r == victim ? victim_mode : std::string("local")));
    }
    for (int r = 0; r < 3; ++r) ASSERT_EQ(group[r]->Line(), "JOINED") << "rank " << r;
    for (int r = 0; r < 3; ++r) {
      if (r != victim || victim_mode == "hang_swarm") {
        ASSERT_EQ(group[r]->Line(), "ENTER") << "rank " << r;
      }
    }
    absl::SleepFor(absl::Milliseconds(300));  // all of them now wait inside AllReduce
    group[victim]->Kill();
    const absl::Time killed = absl::Now();
    for (int r = 0; r < 3; ++r) {
      if (r == victim) continue;
      const std::string done = group[r]->Line(absl::Seconds(30));
      EXPECT_TRUE(absl::StartsWith(done, "DONE UNAVAILABLE"))
          << "rank " << r << ": " << done;
      EXPECT_TRUE(absl::StrContains(done, reason)) << "rank " << r << ": " << done;
      EXPECT_NE(group[r]->Wait(), 0);
    }
    EXPECT_LT(absl::Now() - killed, absl::Seconds(20));  // the deadline is 60 s
  }
};

TEST_F(LocalGroupKills, KilledWorkerFailsTheOthersBeforeTheDeadline) {
  KillDuringAllReduce(2, "hang", "local worker rank 2 died or left the group");
}

TEST_F(LocalGroupKills, KilledLeaderFailsTheWorkersBeforeTheDeadline) {
  KillDuringAllReduce(0, "hang_swarm",
                      "the local leader (rank 0) died or left the group");
}

}  // namespace
}  // namespace hivemind
