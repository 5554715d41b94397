// One local worker process, driven by local_process_test:
//   local_worker key=K rank=R world=N numel=E seed=S weight=W out=FILE mode=MODE
//                [timeout_ms=T] [bootstrap=ADDR prefix=P round=RND target=G]
// Modes:
//   local       joins the group and runs one AllReduce (no swarm step);
//   swarm       (rank 0) also joins the swarm: an OpenDHT node bootstrapped from
//               ADDR and a DecentralizedAverager (prefix P, one tensor of E floats,
//               groups of G) whose step, in round RND, is the swarm step;
//   hang        joins the group, then never calls AllReduce (the test kills it);
//   hang_swarm  (rank 0) a swarm step that never returns (the test kills it).
// Prints "JOINED" once the group is formed, "ENTER" right before AllReduce, then
// writes its values (floats) to FILE and prints "DONE <status>".
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "hivemind/dht/opendht_node.h"
#include "hivemind/local/cpu_local_reducer.h"
#include "hivemind/local/swarm_step.h"
#include "tests/local/worker_input.h"

namespace {

std::map<std::string, std::string> ParseFlags(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (eq != std::string::npos) flags[arg.substr(0, eq)] = arg.substr(eq + 1);
  }
  return flags;
}

struct Swarm {
  std::unique_ptr<hivemind::OpenDhtNode> dht;
  std::unique_ptr<hivemind::DecentralizedAverager> averager;
};

// The leader's swarm membership, or an error line on stdout.
bool JoinSwarm(std::map<std::string, std::string>& flags, size_t numel, Swarm* swarm) {
  hivemind::DhtOptions dht_options;
  dht_options.run_id = "local";
  dht_options.initial_peers = {flags["bootstrap"]};
  auto dht = hivemind::OpenDhtNode::Create(dht_options);
  if (!dht.ok()) {
    std::cout << "DONE dht: " << dht.status() << std::endl;
    return false;
  }
  swarm->dht = *std::move(dht);
  hivemind::AveragerOptions options = hivemind::testing_util::SwarmOptions(
      flags["prefix"], std::atoi(flags["target"].c_str()));
  auto averager =
      hivemind::DecentralizedAverager::Create(swarm->dht.get(), {numel}, options);
  if (!averager.ok()) {
    std::cout << "DONE averager: " << averager.status() << std::endl;
    return false;
  }
  swarm->averager = *std::move(averager);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> flags = ParseFlags(argc, argv);
  const std::string mode = flags["mode"];
  const size_t numel = std::strtoull(flags["numel"].c_str(), nullptr, 10);
  hivemind::CpuLocalReducerOptions options;
  options.key = flags["key"];
  options.rank = std::atoi(flags["rank"].c_str());
  options.world_size = std::atoi(flags["world"].c_str());
  options.capacity = numel;
  options.join_timeout = absl::Seconds(30);

  Swarm swarm;
  if (mode == "swarm" && !JoinSwarm(flags, numel, &swarm)) return 1;
  auto reducer = hivemind::CpuLocalReducer::Create(options);
  if (!reducer.ok()) {
    std::cout << "DONE create: " << reducer.status() << std::endl;
    return 1;
  }
  std::cout << "JOINED" << std::endl;
  if (mode == "hang") {
    for (;;) pause();
  }

  std::vector<float> values(numel);
  const int seed = std::atoi(flags["seed"].c_str());
  for (size_t k = 0; k < numel; ++k)
    values[k] = hivemind::testing_util::WorkerInput(seed, k);
  hivemind::LocalReduceOptions call;
  call.weight = std::strtof(flags["weight"].c_str(), nullptr);
  if (flags.count("timeout_ms") != 0) {
    call.timeout = absl::Milliseconds(std::atoi(flags["timeout_ms"].c_str()));
  }
  hivemind::SwarmStep swarm_step;
  if (mode == "swarm") {
    hivemind::StepOptions step;
    step.round = flags["round"];
    swarm_step = hivemind::AveragerSwarmStep(swarm.averager.get(), step);
  } else if (mode == "hang_swarm") {
    swarm_step = [](absl::Span<float>, float) -> absl::Status {
      for (;;) pause();
    };
  }
  std::cout << "ENTER" << std::endl;
  const absl::Status status =
      (*reducer)->AllReduce(absl::MakeSpan(values), call, swarm_step);
  std::ofstream(flags["out"], std::ios::binary)
      .write(reinterpret_cast<const char*>(values.data()),
             static_cast<std::streamsize>(values.size() * sizeof(float)));
  std::cout << "DONE " << (status.ok() ? "OK" : status.ToString()) << std::endl;
  return status.ok() ? 0 : 1;
}
