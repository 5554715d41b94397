// State loading from three donor processes, one of which is killed with SIGKILL in
// the middle of the transfer: the loader still ends with the exact state.
#include <fcntl.h>
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

namespace hivemind {
namespace {

struct Child {
  pid_t pid = -1;
  FILE* to = nullptr;    // its stdin
  FILE* from = nullptr;  // its stdout
};

Child Spawn(const std::vector<std::string>& args) {
  // Close-on-exec, so later children do not inherit (and hold open) this child's
  // stdin; dup2 clears the flag on the copies the child keeps.
  int in[2], out[2];
  EXPECT_EQ(pipe2(in, O_CLOEXEC), 0);
  EXPECT_EQ(pipe2(out, O_CLOEXEC), 0);
  Child c;
  c.pid = fork();
  if (c.pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[1]);
    close(out[0]);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(HIVEMIND_STATE_DONOR));
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(HIVEMIND_STATE_DONOR, argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  c.to = fdopen(in[1], "w");
  c.from = fdopen(out[0], "r");
  return c;
}

std::string ReadLine(FILE* f) {
  char buffer[512];
  return fgets(buffer, sizeof(buffer), f) ? std::string(buffer) : std::string();
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
