// All-reduce among child processes, one of which is killed with SIGKILL mid-round.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "hivemind/averaging/load_balancing.h"
#include "tests/child_process.h"

namespace hivemind {
namespace {

using testing_util::Child;
using testing_util::ReadLine;

// Member `index` of `n`; a non-empty `kill_after` makes it SIGKILL itself after
// sending that many bytes.
Child Spawn(int index, int n, size_t numel, const std::string& output,
            const std::string& kill_after) {
  std::vector<std::string> args = {std::to_string(index), std::to_string(n),
                                   std::to_string(numel), output};
  if (!kill_after.empty()) args.push_back(kill_after);
  return testing_util::SpawnChild(HIVEMIND_ALLREDUCE_PEER, args);
}

float Input(int member, size_t k) {
  return std::sin(0.001f * static_cast<float>(k) + static_cast<float>(member));
}

TEST(AllReduceProcesses, SurvivorsOfASigkilledMemberFinishWithTheDocumentedResult) {
  const int n = 4, victim = 2;
  const size_t numel = size_t{8} << 20;  // 32 MiB per member
  const std::string dir = ::testing::TempDir();
  std::vector<Child> children;
  std::vector<std::string> outputs;  // result files
  for (int i = 0; i < n; ++i) {
    outputs.push_back(dir + "/allreduce_out_" + std::to_string(i));
    // The victim SIGKILLs itself after sending 4 MiB of its 24 MiB of parts.
    children.push_back(
        Spawn(i, n, numel, outputs.back(), i == victim ? std::to_string(4 << 20) : ""));
  }
  std::string addresses;
  for (Child& c : children) {
    const std::string line = ReadLine(c.from);
    ASSERT_EQ(line.rfind("ADDR ", 0), 0u) << line;
    addresses += line.substr(5, line.size() - 6) + " ";
  }
  const absl::Time start = absl::Now();
  for (Child& c : children) {
    fprintf(c.to, "%s\n", addresses.c_str());
    fflush(c.to);
  }

  std::vector<std::string> done(n);
  for (int i = 0; i < n; ++i) {
    done[i] = ReadLine(children[i].from);
    int status = 0;
    waitpid(children[i].pid, &status, 0);
    if (i == victim) {
      EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    } else {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << done[i];
    }
  }
  // Within the round timeout (20 s) plus start-up slack.
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_TRUE(done[victim].empty()) << "the victim finished before it was killed";

  std::vector<GroupMember> members(n);
  const std::vector<uint64_t> sizes = SplitIntoSpans(numel, members);
  std::vector<std::vector<float>> results(n, std::vector<float>(numel));
  int saw_failure = 0;  // survivors that saw the victim fail as a sender or reducer
  for (int i = 0; i < n; ++i) {
    if (i == victim) continue;
    EXPECT_NE(done[i].find("DONE OK"), std::string::npos) << done[i];
    if (done[i].find("excluded=0 failed_spans=0") == std::string::npos) ++saw_failure;
    std::ifstream(outputs[i], std::ios::binary)
        .read(reinterpret_cast<char*>(results[i].data()),
              static_cast<std::streamsize>(numel * sizeof(float)));
  }
  // The kill landed mid-round (a survivor that had already swapped every part with
  // the victim may see nothing).
  EXPECT_GE(saw_failure, 1);
  // Every value is the mean of all members (the victim's part arrived before it
  // died), the mean of the survivors, or - in the victim's own span - the local
  // value; outside the victim's span all survivors agree bit for bit.
  uint64_t begin = 0;
  for (int j = 0; j < n; ++j) {
    const uint64_t end = begin + sizes[j];
    for (uint64_t k = begin; k < end; k += 97) {
      double all = 0, survivors = 0;
      for (int m = 0; m < n; ++m) {
        all += Input(m, k) / n;
        if (m != victim) survivors += Input(m, k) / (n - 1);
      }
      for (int i = 0; i < n; ++i) {
        if (i == victim) continue;
        const float v = results[i][k];
        const bool ok = std::fabs(v - all) < 1e-5 || std::fabs(v - survivors) < 1e-5 ||
                        (j == victim && v == Input(i, k));
        ASSERT_TRUE(ok) << "member " << i << " index " << k << " value " << v;
        if (j != victim) {
          ASSERT_EQ(v, results[victim == 0 ? 1 : 0][k]) << k;
        }
      }
    }
    begin = end;
  }
  for (Child& c : children) {
    fclose(c.to);
    fclose(c.from);
  }
}

}  // namespace
}  // namespace hivemind
