// hivemind-dht: runs a DHT node that others join (the equivalent of hivemind's
// `hivemind-dht`). Prints the address to pass as an initial peer, then every 10 s
// how many nodes it knows, until SIGINT or SIGTERM.
//
//   hivemind_dht --listen=0.0.0.0:31337
//   hivemind_dht --listen=127.0.0.1:0 --initial_peers=10.0.0.5:31337
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "hivemind/dht/opendht_node.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0",
          "UDP HOST:PORT to listen on (port 0: any).");
ABSL_FLAG(std::string, initial_peers, "",
          "Comma-separated HOST:PORT of nodes to join; empty starts a new DHT.");
ABSL_FLAG(std::string, run_id, "hivemind", "Run id of the records this node writes.");
ABSL_FLAG(int, report_every_s, 10, "Seconds between status lines (0: never).");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // Block the stop signals before any thread starts, then wait for one.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  hivemind::DhtOptions options;
  options.run_id = absl::GetFlag(FLAGS_run_id);
  options.listen_address = absl::GetFlag(FLAGS_listen);
  for (absl::string_view peer :
       absl::StrSplit(absl::GetFlag(FLAGS_initial_peers), ',', absl::SkipEmpty())) {
    options.initial_peers.emplace_back(peer);
  }
  auto node = hivemind::OpenDhtNode::Create(options);
  if (!node.ok()) {
    std::fprintf(stderr, "hivemind_dht: %s\n", node.status().ToString().c_str());
    return 1;
  }
  std::printf("initial peer: %s\n", (*node)->address().c_str());
  std::printf("peer id: %s\n", (*node)->id().c_str());
  std::fflush(stdout);

  const int every = absl::GetFlag(FLAGS_report_every_s);
  timespec wait{every > 0 ? every : 3600, 0};
  while (true) {
    const int signal = sigtimedwait(&stop, nullptr, &wait);
    if (signal == SIGINT || signal == SIGTERM) break;
    if (every > 0) {
      std::printf("known nodes: %d\n", (*node)->known_nodes());
      std::fflush(stdout);
    }
  }
  std::printf("stopping\n");
  (*node)->Shutdown();
  return 0;
}
