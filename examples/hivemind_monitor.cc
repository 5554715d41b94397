// The swarm monitor: joins the DHT, reads the run's progress records (what every
// DecentralizedOptimizer publishes) and shows peers, epoch, samples/s and the ETA
// of the next epoch, live.
//
//   hivemind_monitor --initial_peers=127.0.0.1:4000 --run_id=demo
//   --target_batch_size=2048
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "hivemind/dht/opendht_node.h"
#include "hivemind/optim/progress_tracker.h"

ABSL_FLAG(std::string, initial_peers, "", "DHT peers to join, HOST:PORT,...");
ABSL_FLAG(std::string, run_id, "fashion_mnist", "The run to watch.");
ABSL_FLAG(int64_t, target_batch_size, 0, "The run's target batch size (for the ETA).");
ABSL_FLAG(double, every, 2.0, "Seconds between reports.");
ABSL_FLAG(int, count, 0, "Stop after this many reports (0: until SIGINT/SIGTERM).");

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

void Report(const std::vector<hivemind::PeerProgress>& records, int64_t target) {
  uint64_t epoch = 0;
  for (const auto& r : records) {
    if (!r.client_mode) epoch = std::max(epoch, r.epoch);
  }
  uint64_t samples = 0;
  double rate = 0.0;
  int trainers = 0, clients = 0;
  for (const auto& r : records) {
    rate += r.samples_per_second;
    r.client_mode ? ++clients : ++trainers;
    if (r.epoch == epoch) samples += r.samples_accumulated;
  }
  std::string eta = "?";
  if (target > 0 && rate > 0.0) {
    const double left = std::max(0.0, static_cast<double>(target) - samples) / rate;
    eta = absl::StrFormat("%.1f s", left);
  }
  std::printf(
      "%s | peers %d (+%d clients) | epoch %llu | samples %llu/%lld | "
      "%.0f samples/s | ETA %s\n",
      absl::FormatTime("%H:%M:%S", absl::Now(), absl::LocalTimeZone()).c_str(), trainers,
      clients, static_cast<unsigned long long>(epoch),
      static_cast<unsigned long long>(samples), static_cast<long long>(target), rate,
      eta.c_str());
  for (const auto& r : records) {
    std::printf("    %s  epoch %-5llu samples %-7llu %8.1f samples/s  %s%.1f s ago\n",
                r.peer_id.substr(0, 8).c_str(), static_cast<unsigned long long>(r.epoch),
                static_cast<unsigned long long>(r.samples_accumulated),
                r.samples_per_second, r.client_mode ? "client  " : "",
                absl::ToDoubleSeconds(absl::Now() - r.time));
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  hivemind::DhtOptions options;
  options.run_id = absl::GetFlag(FLAGS_run_id);
  for (absl::string_view peer :
       absl::StrSplit(absl::GetFlag(FLAGS_initial_peers), ',', absl::SkipEmpty())) {
    options.initial_peers.emplace_back(peer);
  }
  auto dht = hivemind::OpenDhtNode::Create(options);
  if (!dht.ok()) {
    std::fprintf(stderr, "hivemind_monitor: %s\n", dht.status().ToString().c_str());
    return 1;
  }
  const int count = absl::GetFlag(FLAGS_count);
  for (int i = 0; !g_stop && (count == 0 || i < count); ++i) {
    if (i > 0) absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_every)));
    auto records = hivemind::ReadProgress(dht->get(), options.run_id, absl::Seconds(3));
    if (!records.ok()) {
      std::fprintf(stderr, "hivemind_monitor: %s\n", records.status().ToString().c_str());
      continue;
    }
    Report(*records, absl::GetFlag(FLAGS_target_batch_size));
  }
  (*dht)->Shutdown();
  return 0;
}
