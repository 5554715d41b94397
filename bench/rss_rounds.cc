// Memory under many rounds: one peer (run one process per peer) averages a vector
// with the others round after round and checks that its resident memory stays flat
// (hivemind's issue #264: an averager whose memory grew without bound on 50 Mbit/s
// links until the process ran out of memory). bench/rss_under_slow_links.sh runs 4
// of them on an emulated WAN.
//
//   rss_rounds --rank=R --peers=N --rendezvous_dir=DIR --listen_host=ADDR
//              [--mode=averager --initial_peers=HOST:PORT | --mode=allreduce]
//              [--rounds=1000] [--warmup=100] [--numel=262144] [--max_growth=0.05]
//
// Modes: `averager` (default) runs DecentralizedAverager steps (DHT matchmaking, then
// the butterfly all-reduce: what a training peer does every epoch); `allreduce` runs
// AllReducer::Run on a fixed group (addresses exchanged through DIR).
// The ranks start each round together (a barrier of files in DIR, outside the code
// measured), so a rank that failed a round does not fall behind for good.
// RSS is /proc/self/statm's resident pages, sampled after round --warmup and after the
// last round (and printed every --report_every rounds). The last line is
//   rss_rounds: rank=R ... rss_warm_kib=A rss_end_kib=B growth=G ok=1
// and the exit status is 1 when B exceeds A by more than --max_growth, or when fewer
// than --min_ok of the rounds averaged the whole vector with the whole group.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "hivemind/averaging/allreduce.h"
#include "hivemind/averaging/averager.h"
#include "hivemind/codec/factory.h"
#include "hivemind/dht/opendht_node.h"
#include "hivemind/net/endpoint.h"

ABSL_FLAG(int, rank, 0, "This peer's rank, 0..peers-1.");
ABSL_FLAG(int, peers, 4, "Number of peers (the group size).");
ABSL_FLAG(std::string, rendezvous_dir, "", "Directory shared by all ranks.");
ABSL_FLAG(std::string, listen_host, "127.0.0.1", "This peer's address.");
ABSL_FLAG(std::string, mode, "averager", "averager or allreduce (see the file comment).");
ABSL_FLAG(std::string, initial_peers, "", "averager mode: DHT bootstrap HOST:PORT,...");
ABSL_FLAG(int, rounds, 1000, "Rounds to run.");
ABSL_FLAG(int, warmup, 100, "The first RSS sample is taken after this many rounds.");
ABSL_FLAG(int, report_every, 100, "Print the RSS every this many rounds.");
ABSL_FLAG(int64_t, numel, 262144, "Floats in the averaged vector.");
ABSL_FLAG(std::string, codec, "none", "Codec spec (none, blockwise8, ...).");
ABSL_FLAG(double, matchmaking_time, 2.0, "averager mode: seconds of matchmaking.");
ABSL_FLAG(double, round_timeout, 30.0, "Seconds of one round at most.");
ABSL_FLAG(double, barrier_timeout, 120.0, "Seconds to wait for the other ranks.");
ABSL_FLAG(double, max_growth, 0.05, "Largest allowed RSS growth after warm-up.");
ABSL_FLAG(double, min_ok, 0.9, "Smallest allowed fraction of fully averaged rounds.");

namespace {

int64_t RssKib() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE) / 1024;
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << contents;
    if (!out.good()) return absl::UnavailableError("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError("cannot rename " + tmp);
  }
  return absl::OkStatus();
}

// Announces that this rank starts round `round` and waits until every rank has.
absl::Status Barrier(const std::string& dir, int rank, int peers, int round) {
  const std::string mine = absl::StrCat(dir, "/round.", rank);
  if (absl::Status st = WriteFileAtomically(mine, absl::StrCat(round, "\n")); !st.ok()) {
    return st;
  }
  const absl::Time deadline =
      absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_barrier_timeout));
  for (int r = 0; r < peers; ++r) {
    while (true) {
      std::ifstream in(absl::StrCat(dir, "/round.", r));
      int theirs = -1;
      if (in >> theirs && theirs >= round) break;
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat("rank ", r, " did not reach round ", round));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  return absl::OkStatus();
}

// True when the round averaged every span with every member.
bool FullyAveraged(const hivemind::AllReduceReport& report, int peers, int members) {
  if (members != peers || !report.excluded.empty()) return false;
  for (const hivemind::SpanOutcome& span : report.spans) {
    if (!span.status.ok()) return false;
  }
  return true;
}

// One way to run a round: fills nothing, averages `values` in place.
class RoundRunner {
 public:
  virtual ~RoundRunner() = default;
  // Returns whether the round averaged everything with everyone.
  virtual bool Run(int round, std::vector<float>& values) = 0;
};

class AveragerRunner : public RoundRunner {
 public:
  static absl::StatusOr<std::unique_ptr<RoundRunner>> Create(
      int64_t numel, const hivemind::Codec* codec) {
    auto runner = std::make_unique<AveragerRunner>();
    hivemind::DhtOptions dht;
    dht.run_id = "rss_rounds";
    dht.listen_address = absl::GetFlag(FLAGS_listen_host) + ":0";
    for (absl::string_view peer :
         absl::StrSplit(absl::GetFlag(FLAGS_initial_peers), ',', absl::SkipEmpty())) {
      dht.initial_peers.emplace_back(peer);
    }
    auto node = hivemind::OpenDhtNode::Create(dht);
    if (!node.ok()) return node.status();
    runner->dht_ = std::move(*node);
    hivemind::AveragerOptions a;
    a.prefix = "rss";
    a.endpoint.listen_address = "tcp://" + absl::GetFlag(FLAGS_listen_host) + ":0";
    a.target_group_size = absl::GetFlag(FLAGS_peers);
    a.matchmaking_time = absl::Seconds(absl::GetFlag(FLAGS_matchmaking_time));
    a.assemble_early = true;
    a.allreduce_timeout = absl::Seconds(absl::GetFlag(FLAGS_round_timeout));
    a.codec = codec;
    auto averager = hivemind::DecentralizedAverager::Create(
        runner->dht_.get(), {static_cast<size_t>(numel)}, std::move(a));
    if (!averager.ok()) return averager.status();
    runner->averager_ = std::move(*averager);
    return std::unique_ptr<RoundRunner>(std::move(runner));
  }

  bool Run(int round, std::vector<float>& values) override {
    {
      hivemind::TensorLock tensors = averager_->LockTensors();
      std::copy(values.begin(), values.end(), tensors.flat().begin());
    }
    hivemind::StepOptions step;
    step.round = absl::StrCat("r", round);
    step.timeout = absl::Seconds(absl::GetFlag(FLAGS_round_timeout));
    step.allow_retries = false;
    absl::StatusOr<hivemind::StepResult> result = averager_->Step(step).Wait();
    if (!result.ok()) return false;
    {
      hivemind::TensorLock tensors = averager_->LockTensors();
      values.assign(tensors.flat().begin(), tensors.flat().end());
    }
    return FullyAveraged(result->report, absl::GetFlag(FLAGS_peers),
                         static_cast<int>(result->group.members.size()));
  }

  ~AveragerRunner() override {
    if (averager_) averager_->Shutdown();
  }

 private:
  std::unique_ptr<hivemind::OpenDhtNode> dht_;
  std::unique_ptr<hivemind::DecentralizedAverager> averager_;
};

class AllReduceRunner : public RoundRunner {
 public:
  static absl::StatusOr<std::unique_ptr<RoundRunner>> Create(
      const hivemind::Codec* codec) {
    auto runner = std::make_unique<AllReduceRunner>();
    hivemind::EndpointOptions options;
    options.listen_address = "tcp://" + absl::GetFlag(FLAGS_listen_host) + ":0";
    auto endpoint = hivemind::Endpoint::Create(options);
    if (!endpoint.ok()) return endpoint.status();
    runner->endpoint_ = std::move(*endpoint);
    runner->reducer_ = std::make_unique<hivemind::AllReducer>(runner->endpoint_.get());
    runner->codec_ = codec;
    // Addresses are opaque strings (they may carry a key): one per line.
    const std::string dir = absl::GetFlag(FLAGS_rendezvous_dir);
    const int rank = absl::GetFlag(FLAGS_rank);
    absl::Status st = WriteFileAtomically(
        absl::StrCat(dir, "/endpoint.", rank),
        runner->endpoint_->address() + "\n" + runner->endpoint_->id() + "\n");
    if (!st.ok()) return st;
    const absl::Time deadline =
        absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_barrier_timeout));
    for (int r = 0; r < absl::GetFlag(FLAGS_peers); ++r) {
      hivemind::GroupMember member;
      while (true) {
        std::ifstream in(absl::StrCat(dir, "/endpoint.", r));
        if (std::getline(in, member.address) && std::getline(in, member.peer_id)) break;
        if (absl::Now() > deadline) {
          return absl::DeadlineExceededError(
              absl::StrCat("rank ", r, " never published"));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      runner->members_.push_back(std::move(member));
    }
    return std::unique_ptr<RoundRunner>(std::move(runner));
  }

  bool Run(int round, std::vector<float>& values) override {
    hivemind::GroupInfo group;
    group.group_id = absl::StrCat("rss_rounds/", round);
    group.members = members_;
    hivemind::AllReduceOptions options;
    options.codec = codec_;
    options.timeout = absl::Seconds(absl::GetFlag(FLAGS_round_timeout));
    auto report =
        reducer_->Run(group, absl::GetFlag(FLAGS_rank), absl::MakeSpan(values), options);
    return report.ok() && FullyAveraged(*report, absl::GetFlag(FLAGS_peers),
                                        static_cast<int>(members_.size()));
  }

 private:
  std::unique_ptr<hivemind::Endpoint> endpoint_;
  std::unique_ptr<hivemind::AllReducer> reducer_;
  const hivemind::Codec* codec_ = nullptr;
  std::vector<hivemind::GroupMember> members_;
};

int Main() {
  const int rank = absl::GetFlag(FLAGS_rank);
  const int peers = absl::GetFlag(FLAGS_peers);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  const int warmup = absl::GetFlag(FLAGS_warmup);
  const int64_t numel = absl::GetFlag(FLAGS_numel);
  const std::string dir = absl::GetFlag(FLAGS_rendezvous_dir);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (dir.empty() || rank < 0 || rank >= peers || warmup < 0 || warmup >= rounds ||
      numel <= 0 || (mode != "averager" && mode != "allreduce")) {
    std::fprintf(stderr,
                 "rss_rounds: needs --rendezvous_dir, 0 <= rank < peers, "
                 "0 <= warmup < rounds, numel > 0, mode averager or allreduce\n");
    return 2;
  }
  std::unique_ptr<hivemind::Codec> codec;
  if (absl::GetFlag(FLAGS_codec) != "none") {
    auto made = hivemind::CreateCodecFromSpec(absl::GetFlag(FLAGS_codec));
    if (!made.ok()) {
      std::fprintf(stderr, "rss_rounds: %s\n", made.status().ToString().c_str());
      return 2;
    }
    codec = std::move(*made);
  }
  auto runner = mode == "averager" ? AveragerRunner::Create(numel, codec.get())
                                   : AllReduceRunner::Create(codec.get());
  if (!runner.ok()) {
    std::fprintf(stderr, "rank %d: %s\n", rank, runner.status().ToString().c_str());
    return 1;
  }
  std::vector<float> values(static_cast<size_t>(numel));
  int ok_rounds = 0;
  int64_t rss_warm = 0, rss_peak = 0;
  std::vector<double> seconds;
  const absl::Time start = absl::Now();
  for (int round = 0; round < rounds; ++round) {
    if (absl::Status st = Barrier(dir, rank, peers, round); !st.ok()) {
      std::fprintf(stderr, "rank %d: %s\n", rank, st.ToString().c_str());
      return 1;
    }
    for (int64_t i = 0; i < numel; ++i) {
      values[i] = static_cast<float>((rank + 1) * ((i + round) % 97)) * 1e-2f;
    }
    const absl::Time round_start = absl::Now();
    if ((*runner)->Run(round, values)) ++ok_rounds;
    seconds.push_back(absl::ToDoubleSeconds(absl::Now() - round_start));
    const int done = round + 1;
    if (done >= warmup) rss_peak = std::max(rss_peak, RssKib());
    if (done == warmup) rss_warm = RssKib();
    if (done % absl::GetFlag(FLAGS_report_every) == 0 || done == rounds) {
      std::printf("rank %d: round %d rss_kib=%lld ok_rounds=%d\n", rank, done,
                  static_cast<long long>(RssKib()), ok_rounds);
      std::fflush(stdout);
    }
  }
  const int64_t rss_end = RssKib();
  if (warmup == 0) rss_warm = rss_end;  // no warm-up sample: nothing to compare
  std::sort(seconds.begin(), seconds.end());
  const double growth =
      static_cast<double>(rss_end - rss_warm) / static_cast<double>(rss_warm);
  const bool ok = growth <= absl::GetFlag(FLAGS_max_growth) &&
                  ok_rounds >= absl::GetFlag(FLAGS_min_ok) * rounds;
  std::printf(
      "rss_rounds: rank=%d mode=%s peers=%d rounds=%d numel=%lld ok_rounds=%d "
      "round_median_s=%.3f round_max_s=%.3f wall_s=%.1f rss_warm_kib=%lld "
      "rss_end_kib=%lld rss_peak_kib=%lld growth=%.4f ok=%d\n",
      rank, mode.c_str(), peers, rounds, static_cast<long long>(numel), ok_rounds,
      seconds[seconds.size() / 2], seconds.back(),
      absl::ToDoubleSeconds(absl::Now() - start), static_cast<long long>(rss_warm),
      static_cast<long long>(rss_end), static_cast<long long>(rss_peak), growth, ok);
  std::fflush(stdout);
  // Wait for the others before leaving, so nobody's last round loses a member.
  if (absl::Status st = Barrier(dir, rank, peers, rounds); !st.ok()) {
    std::fprintf(stderr, "rank %d: %s\n", rank, st.ToString().c_str());
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return Main();
}
