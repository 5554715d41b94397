// State loading from three donor processes, one of which is killed with SIGKILL in
// the middle of the transfer: the loader still ends with the exact state.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "hivemind/averaging/state_sharing.h"
#include "hivemind/dht/opendht_node.h"
#include "tests/averaging/state_fixture.h"
#include "tests/child_process.h"

namespace hivemind {
namespace {

using testing_util::Child;
using testing_util::ReadLine;

Child Spawn(const std::vector<std::string>& args) {
  return testing_util::SpawnChild(HIVEMIND_STATE_DONOR, args);
}

TEST(StateSharingProcesses, LoadsTheExactStateWhenADonorIsSigkilledMidTransfer) {
  const size_t numel = size_t{16} << 20;  // 64 MiB of values
  const int64_t epoch = 21;
  const uint64_t seed = 99;
  DhtOptions dht_options;
  dht_options.run_id = "state-process";
  auto bootstrap = std::move(OpenDhtNode::Create(dht_options)).value();
  // Paced at one 1 MiB stripe per 40 ms each: about a second for the whole state,
  // long enough to kill a donor in the middle.
  std::vector<Child> donors;
  for (int i = 0; i < 3; ++i) {
    donors.push_back(Spawn({"state-process", bootstrap->address(), std::to_string(numel),
                            std::to_string(epoch), std::to_string(seed),
                            std::to_string(1 << 20), "40"}));
  }
  std::vector<std::string> addresses;
  for (Child& c : donors) {
    const std::string line = ReadLine(c.from);
    ASSERT_EQ(line.rfind("READY ", 0), 0u) << line;
    addresses.push_back(line.substr(6, line.size() - 7));
  }

  dht_options.initial_peers = {bootstrap->address()};
  auto dht = std::move(OpenDhtNode::Create(dht_options)).value();
  auto endpoint = std::move(Endpoint::Create({})).value();
  LoadStateOptions options;
  options.prefix = "run";
  options.max_donors = 3;
  options.stripe_timeout = absl::Seconds(2);
  options.timeout = absl::Seconds(25);
  LoadStateReport report;
  absl::StatusOr<PeerState> loaded = absl::UnknownError("not run");
  const absl::Time start = absl::Now();
  std::thread load(
      [&] { loaded = LoadStateFromPeers(endpoint.get(), dht.get(), options, &report); });

  // Kill the first donor once a quarter of the state has arrived.
  const uint64_t state_bytes = numel * sizeof(float);
  while (endpoint->stats().bytes_received < state_bytes / 4 &&
         absl::Now() - start < absl::Seconds(20)) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  const uint64_t received_at_kill = endpoint->stats().bytes_received;
  ASSERT_EQ(kill(donors[0].pid, SIGKILL), 0);
  load.join();
  EXPECT_LT(received_at_kill, state_bytes / 2) << "the kill came too late";

  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(
      testing_state::BitIdentical(testing_state::MakeState(numel, epoch, seed), *loaded));
  ASSERT_EQ(report.donors.size(), 3u);
  uint64_t total = 0;
  for (const StateDonorReport& d : report.donors) {
    total += d.stripes;
    if (d.address == addresses[0]) {
      EXPECT_EQ(d.status.code(), absl::StatusCode::kDeadlineExceeded) << d.status;
      EXPECT_GE(d.stripes, 1u);
    } else {
      EXPECT_TRUE(d.status.ok()) << d.address << ": " << d.status;
    }
  }
  EXPECT_EQ(total, report.stripes);
  EXPECT_GE(report.stripes_retried, 1u);

  for (size_t i = 0; i < donors.size(); ++i) {
    fclose(donors[i].to);
    int status = 0;
    waitpid(donors[i].pid, &status, 0);
    if (i == 0) {
      EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    } else {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    fclose(donors[i].from);
  }
}

}  // namespace
}  // namespace hivemind
