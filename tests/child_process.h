// A child process driven through pipes, for the tests that kill peers with SIGKILL.
#ifndef HIVEMIND_TESTS_CHILD_PROCESS_H_
#define HIVEMIND_TESTS_CHILD_PROCESS_H_

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace hivemind {
namespace testing_util {

struct Child {
  pid_t pid = -1;
  FILE* to = nullptr;    // its stdin
  FILE* from = nullptr;  // its stdout
};

// Starts `binary` with `args` (argv[0] is the binary), its stdin and stdout on pipes.
inline Child SpawnChild(const std::string& binary, const std::vector<std::string>& args) {
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
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(binary.c_str()));
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  c.to = fdopen(in[1], "w");
  c.from = fdopen(out[0], "r");
  return c;
}

// One line of the child's output ("" at end of file).
inline std::string ReadLine(FILE* f) {
  char buffer[512];
  return fgets(buffer, sizeof(buffer), f) ? std::string(buffer) : std::string();
}

}  // namespace testing_util
}  // namespace hivemind

#endif  // HIVEMIND_TESTS_CHILD_PROCESS_H_
