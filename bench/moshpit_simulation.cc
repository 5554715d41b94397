// Moshpit averaging at scale, in one process: --peers real endpoints and all-reducers
// on 127.0.0.1 (small vectors), grouped by Moshpit group bits into groups of
// --group_size, for --rounds rounds. Each round a random --drop fraction of peers is
// absent (they keep their values and come back later). Prints, after every round,
// the relative error of the peers' vectors to the true mean of the initial vectors:
// max_i ||x_i - mean|| / ||mean||.
//
// Group formation here is by bits alone (the DHT matchmaking is exercised by the
// tests): the present peers with equal bits form one group, ordered by peer index.
// With g^2 peers, groups of g and no drops, two rounds give every peer the global
// mean up to float rounding.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "hivemind/averaging/allreduce.h"
#include "hivemind/averaging/moshpit.h"

ABSL_FLAG(int, peers, 256, "Number of peers (each with its own endpoint).");
ABSL_FLAG(int, group_size, 16, "Target group size (a power of two).");
ABSL_FLAG(int, rounds, 4, "Averaging rounds.");
ABSL_FLAG(double, drop, 0.0, "Fraction of peers absent in each round.");
ABSL_FLAG(int, numel, 64, "Elements per vector.");
ABSL_FLAG(int, seed, 1, "Random seed.");

namespace {

struct Peer {
  std::unique_ptr<hivemind::Endpoint> endpoint;
  std::unique_ptr<hivemind::AllReducer> reducer;
  std::vector<float> values;
  std::string bits;
};

std::string ToBits(int value, int width) {
  std::string bits;
  for (int b = width - 1; b >= 0; --b) bits += ((value >> b) & 1) ? '1' : '0';
  return bits;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int n = absl::GetFlag(FLAGS_peers);
  const int group_size = absl::GetFlag(FLAGS_group_size);
  const int bits_per_round = static_cast<int>(std::lround(std::log2(group_size)));
  const int numel = absl::GetFlag(FLAGS_numel);
  std::mt19937 rng(absl::GetFlag(FLAGS_seed));
  std::normal_distribution<float> normal(0.0f, 1.0f);

  std::vector<Peer> peers(n);
  std::vector<double> mean(numel, 0.0);
  for (int i = 0; i < n; ++i) {
    // 256 endpoints in one process: keep only the current group's connections open,
    // or the process runs out of file descriptors.
    hivemind::EndpointOptions endpoint_options;
    endpoint_options.max_connections = group_size;
    auto endpoint = hivemind::Endpoint::Create(endpoint_options);
    if (!endpoint.ok()) {
      std::fprintf(stderr, "endpoint %d: %s\n", i, endpoint.status().ToString().c_str());
      return 1;
    }
    peers[i].endpoint = std::move(endpoint).value();
    peers[i].reducer = std::make_unique<hivemind::AllReducer>(peers[i].endpoint.get());
    peers[i].values.resize(numel);
    for (int k = 0; k < numel; ++k) {
      peers[i].values[k] = normal(rng) + static_cast<float>(i % 7);
      mean[k] += peers[i].values[k] / n;
    }
    // Start on a grid: peer i in row i / group_size... its bits name its row.
    peers[i].bits = ToBits(i % group_size, bits_per_round);
  }
  double mean_norm = 0;
  for (double m : mean) mean_norm += m * m;
  mean_norm = std::sqrt(mean_norm);
  // "max X (median Y)": the worst peer's relative error and the median peer's.
  auto relative_error = [&]() {
    std::vector<double> errors;
    for (const Peer& p : peers) {
      double e = 0;
      for (int k = 0; k < numel; ++k)
        e += (p.values[k] - mean[k]) * (p.values[k] - mean[k]);
      errors.push_back(std::sqrt(e) / mean_norm);
    }
    std::sort(errors.begin(), errors.end());
    char text[64];
    std::snprintf(text, sizeof(text), "max %.3e (median %.3e)", errors.back(),
                  errors[errors.size() / 2]);
    return std::string(text);
  };
  std::printf("peers=%d group_size=%d drop=%.2f numel=%d\n", n, group_size,
              absl::GetFlag(FLAGS_drop), numel);
  std::printf("round 0: relative error %s\n", relative_error().c_str());

  std::uniform_real_distribution<double> coin(0.0, 1.0);
  for (int round = 1; round <= absl::GetFlag(FLAGS_rounds); ++round) {
    std::map<std::string, std::vector<int>> groups;  // bits -> present peers
    for (int i = 0; i < n; ++i) {
      if (coin(rng) >= absl::GetFlag(FLAGS_drop)) groups[peers[i].bits].push_back(i);
    }
    std::vector<std::thread> threads;
    std::vector<int> failures(n, 0);
    int formed = 0;
    for (auto& [bits, present] : groups) {
      // Peers back from an absence keep their old bits, so a key can hold more than
      // group_size peers: split it.
      for (size_t first = 0; first < present.size(); first += group_size) {
        const std::vector<int> members(
            present.begin() + first,
            present.begin() + std::min(present.size(), first + group_size));
        if (members.size() < 2) continue;
        ++formed;
        auto group = std::make_shared<hivemind::GroupInfo>();
        group->group_id =
            "round" + std::to_string(round) + "/" + bits + "/" + std::to_string(first);
        for (int i : members) {
          group->members.push_back({peers[i].endpoint->id(),
                                    peers[i].endpoint->address(),
                                    0,
                                    hivemind::MemberMode::kNode,
                                    0,
                                    {}});
        }
        for (size_t index = 0; index < members.size(); ++index) {
          const int i = members[index];
          threads.emplace_back([&, group, i, index] {
            hivemind::AllReduceOptions options;
            options.sender_timeout = absl::Seconds(10);
            auto report = peers[i].reducer->Run(*group, static_cast<int>(index),
                                                absl::MakeSpan(peers[i].values), options);
            auto next = hivemind::NextGroupBits(*group, static_cast<int>(index),
                                                peers[i].bits, bits_per_round);
            if (!report.ok() || !next.ok()) {
              failures[i] = 1;
              return;
            }
            for (const hivemind::SpanOutcome& span : report->spans) {
              if (!span.status.ok()) failures[i] = 1;
            }
            peers[i].bits = *next;
          });
        }
      }
    }
    for (auto& t : threads) t.join();
    int failed = 0;
    for (int f : failures) failed += f;
    std::printf("round %d: %d groups, %d members with a failed span, relative error %s\n",
                round, formed, failed, relative_error().c_str());
  }
  return 0;
}
