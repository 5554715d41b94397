// A group for all-reduce tests: members in one process (threads), each with its own
// endpoint and AllReducer on 127.0.0.1, and helpers for their inputs and results.
#ifndef HIVEMIND_TESTS_AVERAGING_ALLREDUCE_GROUP_H_
#define HIVEMIND_TESTS_AVERAGING_ALLREDUCE_GROUP_H_

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "hivemind/averaging/allreduce.h"

namespace hivemind {
namespace testing_util {

struct GroupPeer {
  std::unique_ptr<Endpoint> endpoint;
  std::unique_ptr<AllReducer> reducer;
};

class Swarm {
 public:
  // One member per mode; `endpoints[i]` (if given) are member i's endpoint options
  // (client mode is set from the mode).
  explicit Swarm(const std::vector<MemberMode>& modes,
                 std::vector<EndpointOptions> endpoints = {}) {
    static int round = 0;
    group_.group_id = "test-group-" + std::to_string(++round);
    endpoints.resize(modes.size());
    for (size_t i = 0; i < modes.size(); ++i) {
      EndpointOptions& options = endpoints[i];
      options.client_mode = modes[i] == MemberMode::kClient;
      auto endpoint = Endpoint::Create(options);
      EXPECT_TRUE(endpoint.ok()) << endpoint.status();
      GroupPeer peer;
      peer.endpoint = std::move(endpoint).value();
      peer.reducer = std::make_unique<AllReducer>(peer.endpoint.get());
      group_.members.push_back(
          {peer.endpoint->id(), peer.endpoint->address(), 0, modes[i], 0, {}});
      peers_.push_back(std::move(peer));
    }
  }

  // Runs one round on the members in `who` (all when empty), each in its thread.
  std::vector<absl::StatusOr<AllReduceReport>> Run(
      std::vector<std::vector<float>>& values,
      const std::vector<AllReduceOptions>& options, std::vector<int> who = {}) {
    if (who.empty()) {
      for (size_t i = 0; i < peers_.size(); ++i) who.push_back(static_cast<int>(i));
    }
    std::vector<absl::StatusOr<AllReduceReport>> reports(
        peers_.size(), absl::UnknownError("did not run"));
    std::vector<std::thread> threads;
    for (int i : who) {
      threads.emplace_back([&, i] {
        reports[i] =
            peers_[i].reducer->Run(group_, i, absl::MakeSpan(values[i]), options[i]);
      });
    }
    for (auto& t : threads) t.join();
    return reports;
  }

  GroupInfo& group() { return group_; }
  GroupPeer& peer(int i) { return peers_[i]; }

 private:
  GroupInfo group_;
  std::vector<GroupPeer> peers_;
};

// n vectors of `numel` values uniform in [-1, 1), reproducible from `seed`.
inline std::vector<std::vector<float>> RandomInputs(int n, size_t numel, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<std::vector<float>> values(n, std::vector<float>(numel));
  for (auto& v : values) {
    for (float& x : v) x = u(rng);
  }
  return values;
}

// The members in `members` hold the same bytes.
inline void ExpectBitIdentical(const std::vector<std::vector<float>>& values,
                               const std::vector<int>& members) {
  for (int i : members) {
    ASSERT_EQ(std::memcmp(values[i].data(), values[members[0]].data(),
                          values[i].size() * sizeof(float)),
              0)
        << "member " << i << " differs from member " << members[0];
  }
}

}  // namespace testing_util
}  // namespace hivemind

#endif  // HIVEMIND_TESTS_AVERAGING_ALLREDUCE_GROUP_H_
