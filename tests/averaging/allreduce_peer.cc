// One all-reduce member in its own process, driven by allreduce_process_test:
//   allreduce_peer INDEX N NUMEL OUTPUT_FILE [KILL_AFTER_BYTES]
// With KILL_AFTER_BYTES, the process SIGKILLs itself once its endpoint has sent that
// many bytes: a crash at a known point in the middle of the round.
// Prints "ADDR <address>" and reads one line of N space-separated addresses from
// stdin, runs the round on deterministic inputs (see Input()), writes the resulting
// floats to OUTPUT_FILE and prints "DONE <status>".
#include <signal.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "hivemind/averaging/allreduce.h"

namespace {

float Input(int member, size_t k) {
  return std::sin(0.001f * static_cast<float>(k) + static_cast<float>(member));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::fprintf(stderr, "usage: %s INDEX N NUMEL OUTPUT_FILE [KILL_AFTER_BYTES]\n",
                 argv[0]);
    return 2;
  }
  const int index = std::atoi(argv[1]);
  const int n = std::atoi(argv[2]);
  const size_t numel = std::strtoull(argv[3], nullptr, 10);
  auto endpoint = hivemind::Endpoint::Create({});
  if (!endpoint.ok()) return 1;
  hivemind::AllReducer reducer(endpoint->get());
  std::cout << "ADDR " << (*endpoint)->address() << std::endl;

  std::string line;
  if (!std::getline(std::cin, line)) return 1;
  std::istringstream addresses(line);
  hivemind::GroupInfo group;
  group.group_id = "process-test";
  for (int i = 0; i < n; ++i) {
    hivemind::GroupMember member;
    addresses >> member.address;
    member.peer_id = "peer" + std::to_string(i);
    group.members.push_back(member);
  }
  std::atomic<bool> finished{false};
  std::thread killer;
  if (argc == 6) {
    const uint64_t kill_after = std::strtoull(argv[5], nullptr, 10);
    killer = std::thread([&, kill_after] {
      while (!finished) {
        if ((*endpoint)->stats().bytes_sent >= kill_after) raise(SIGKILL);
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });
  }
  std::vector<float> values(numel);
  for (size_t k = 0; k < numel; ++k) values[k] = Input(index, k);
  hivemind::AllReduceOptions options;
  options.part_size = 16384;
  options.max_parts_in_flight = 2;
  options.sender_timeout = absl::Seconds(1);
  options.timeout = absl::Seconds(20);
  auto report = reducer.Run(group, index, absl::MakeSpan(values), options);
  finished = true;
  if (killer.joinable()) killer.join();
  std::ofstream(argv[4], std::ios::binary)
      .write(reinterpret_cast<const char*>(values.data()),
             static_cast<std::streamsize>(values.size() * sizeof(float)));
  int failed_spans = 0;
  if (report.ok()) {
    for (const auto& span : report->spans) failed_spans += span.status.ok() ? 0 : 1;
  }
  std::cout << "DONE " << (report.ok() ? "OK" : report.status().ToString())
            << " excluded=" << (report.ok() ? report->excluded.size() : 0)
            << " failed_spans=" << failed_spans << std::endl;
  return report.ok() ? 0 : 1;
}
