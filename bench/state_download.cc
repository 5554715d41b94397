// End-to-end benchmark of state sharing: a loader downloads the same state from 1, 2
// and 3 donors in the same run and prints the times and the speedups over 1 donor.
// One process per role:
//
//   state_download --role=loader --listen_host=IP --rendezvous_dir=DIR
//                  [--donor_counts=1,2,3] [--expect_donors=3] [--repeats=3]
//   state_download --role=donor --listen_host=IP --dht_peer=HOST:PORT
//
// Every donor publishes the same deterministic state (--state_mib of float32 values,
// see MakeState) under the prefix "bench". The loader runs the DHT's bootstrap node
// and writes its address to DIR/dht_address; donors join through it. The loader waits
// until --expect_donors adverts are visible, then loads the state --repeats times
// with each donor count (interleaved, so drift hits every count alike), checks every
// copy bit for bit, and prints one line per load and a summary whose last line is
// `speedup_vs_1_donor <count>=<x> ...` (median times). bench/wan_state_download.sh
// runs it on an emulated WAN.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "hivemind/averaging/state_sharing.h"
#include "hivemind/dht/opendht_node.h"

ABSL_FLAG(std::string, role, "loader", "loader or donor.");
ABSL_FLAG(std::string, listen_host, "127.0.0.1", "This process's IP address.");
ABSL_FLAG(std::string, run_id, "state-bench", "DHT run id.");
ABSL_FLAG(std::string, dht_peer, "", "Donor: the loader's DHT address (HOST:PORT).");
ABSL_FLAG(std::string, rendezvous_dir, "", "Loader: where to write dht_address.");
ABSL_FLAG(int, state_mib, 64, "Size of the state's values in MiB.");
ABSL_FLAG(int, stripe_kib, 1024, "Donor: stripe size in KiB.");
ABSL_FLAG(int, serve_seconds, 900, "Donor: how long to serve before exiting.");
ABSL_FLAG(std::string, donor_counts, "1,2,3", "Loader: donor counts to compare.");
ABSL_FLAG(int, expect_donors, 3, "Loader: adverts to wait for before loading.");
ABSL_FLAG(int, repeats, 3, "Loader: loads per donor count.");
ABSL_FLAG(int, max_stripes_in_flight, 4, "Loader: stripes in flight per donor.");

namespace {

using hivemind::PeerState;

constexpr char kPrefix[] = "bench";

PeerState MakeState() {
  PeerState state;
  state.epoch = 1000;
  state.metadata = "state_download benchmark";
  state.values.resize(static_cast<size_t>(absl::GetFlag(FLAGS_state_mib)) << 18);
  uint32_t x = 12345;
  for (float& v : state.values) {
    x = x * 1664525u + 1013904223u;
    v = static_cast<float>(static_cast<int32_t>(x)) * 1e-9f;
  }
  state.extra.assign(1 << 16, 'o');
  return state;
}

bool SameState(const PeerState& a, const PeerState& b) {
  return a.epoch == b.epoch && a.metadata == b.metadata && a.extra == b.extra &&
         a.values.size() == b.values.size() &&
         (a.values.empty() ||
          std::memcmp(a.values.data(), b.values.data(), a.values.size() * 4) == 0);
}

std::unique_ptr<hivemind::OpenDhtNode> StartDht(const std::string& initial_peer) {
  hivemind::DhtOptions options;
  options.run_id = absl::GetFlag(FLAGS_run_id);
  options.listen_address = absl::GetFlag(FLAGS_listen_host) + ":0";
  if (!initial_peer.empty()) options.initial_peers = {initial_peer};
  auto dht = hivemind::OpenDhtNode::Create(options);
  if (!dht.ok()) {
    std::fprintf(stderr, "DHT: %s\n", dht.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(dht).value();
}

std::unique_ptr<hivemind::Endpoint> StartEndpoint() {
  hivemind::EndpointOptions options;
  options.listen_address = "tcp://" + absl::GetFlag(FLAGS_listen_host) + ":0";
  auto endpoint = hivemind::Endpoint::Create(options);
  if (!endpoint.ok()) {
    std::fprintf(stderr, "endpoint: %s\n", endpoint.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(endpoint).value();
}

int RunDonor() {
  auto dht = StartDht(absl::GetFlag(FLAGS_dht_peer));
  auto endpoint = StartEndpoint();
  hivemind::StateServerOptions options;
  options.prefix = kPrefix;
  options.stripe_bytes = static_cast<uint32_t>(absl::GetFlag(FLAGS_stripe_kib)) << 10;
  auto server = hivemind::StateServer::Create(endpoint.get(), dht.get(), options);
  absl::Status status = server.ok() ? (*server)->Publish(MakeState()) : server.status();
  if (status.ok()) status = (*server)->WaitForAdvert(absl::Seconds(30));
  if (!status.ok()) {
    std::fprintf(stderr, "donor: %s\n", status.ToString().c_str());
    return 1;
  }
  std::printf("donor %s serving %.1f MiB\n", endpoint->address().c_str(),
              static_cast<double>((*server)->stats().state_bytes) / (1 << 20));
  std::fflush(stdout);
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_serve_seconds)));
  return 0;
}

// Waits until `count` donors advertise (a minute at most).
bool WaitForDonors(hivemind::Dht* dht, int count) {
  const absl::Time give_up = absl::Now() + absl::Minutes(1);
  while (absl::Now() < give_up) {
    auto records = dht->Get(std::string(kPrefix) + ".state", absl::Seconds(2));
    if (records.ok() && static_cast<int>(records->size()) >= count) return true;
    absl::SleepFor(absl::Milliseconds(200));
  }
  return false;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// One load with `donors` donors; returns its time in seconds, or -1 on failure.
double LoadOnce(hivemind::Endpoint* endpoint, hivemind::Dht* dht, int donors,
                const PeerState& expected) {
  hivemind::LoadStateOptions options;
  options.prefix = kPrefix;
  options.max_donors = donors;
  options.max_stripes_in_flight = absl::GetFlag(FLAGS_max_stripes_in_flight);
  hivemind::LoadStateReport report;
  auto state = hivemind::LoadStateFromPeers(endpoint, dht, options, &report);
  const double seconds = absl::ToDoubleSeconds(report.total_time);
  std::string per_donor;
  for (const auto& d : report.donors) absl::StrAppend(&per_donor, " ", d.stripes);
  std::printf("load donors=%d time_s=%.3f MiB_per_s=%.1f stripes_per_donor=[%s ] %s\n",
              donors, seconds,
              static_cast<double>(report.state_bytes) / (1 << 20) / seconds,
              per_donor.c_str(), state.ok() ? "OK" : state.status().ToString().c_str());
  std::fflush(stdout);
  if (!state.ok()) return -1;
  if (!SameState(*state, expected)) {
    std::printf("MISMATCH: the loaded state differs from the published one\n");
    return -1;
  }
  return seconds;
}

int RunLoader() {
  auto dht = StartDht("");
  const std::string dir = absl::GetFlag(FLAGS_rendezvous_dir);
  std::ofstream(dir + "/dht_address.tmp") << dht->address() << "\n";
  std::rename((dir + "/dht_address.tmp").c_str(), (dir + "/dht_address").c_str());
  auto endpoint = StartEndpoint();
  const PeerState expected = MakeState();
  if (!WaitForDonors(dht.get(), absl::GetFlag(FLAGS_expect_donors))) {
    std::fprintf(stderr, "loader: donors did not advertise within a minute\n");
    return 1;
  }
  std::vector<int> counts;
  for (absl::string_view c : absl::StrSplit(absl::GetFlag(FLAGS_donor_counts), ',')) {
    int n = 0;
    if (absl::SimpleAtoi(c, &n) && n > 0) counts.push_back(n);
  }
  std::map<int, std::vector<double>> times;
  bool failed = false;
  for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
    for (int n : counts) {
      const double t = LoadOnce(endpoint.get(), dht.get(), n, expected);
      failed |= t < 0;
      if (t >= 0) times[n].push_back(t);
    }
  }
  std::printf("\nstate %.1f MiB, %d repeats; median load times:\n",
              static_cast<double>(expected.values.size()) * 4 / (1 << 20),
              absl::GetFlag(FLAGS_repeats));
  std::string speedups = "speedup_vs_1_donor";
  for (const auto& [n, t] : times) {
    std::printf("donors=%d median_s=%.3f\n", n, Median(t));
    if (times.count(1)) {
      absl::StrAppend(&speedups,
                      absl::StrFormat(" %d=%.2f", n, Median(times.at(1)) / Median(t)));
    }
  }
  std::printf("%s\n", speedups.c_str());
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string role = absl::GetFlag(FLAGS_role);
  if (role == "donor") return RunDonor();
  if (role == "loader") return RunLoader();
  std::fprintf(stderr, "--role must be loader or donor\n");
  return 2;
}
