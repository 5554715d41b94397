// A state donor in its own process, driven by state_process_test:
//   state_donor RUN_ID DHT_PEER NUMEL EPOCH SEED STRIPE_BYTES SERVE_INTERVAL_MS
// Joins the DHT through DHT_PEER, publishes MakeState(NUMEL, EPOCH, SEED) (see
// state_fixture.h) under the prefix "run", prints "READY <address>" and serves until
// its stdin closes (or it is killed).
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "hivemind/averaging/state_sharing.h"
#include "hivemind/dht/opendht_node.h"
#include "tests/averaging/state_fixture.h"

int main(int argc, char** argv) {
  if (argc != 8) {
    std::fprintf(stderr,
                 "usage: %s RUN_ID DHT_PEER NUMEL EPOCH SEED STRIPE_BYTES "
                 "SERVE_INTERVAL_MS\n",
                 argv[0]);
    return 2;
  }
  hivemind::DhtOptions dht_options;
  dht_options.run_id = argv[1];
  dht_options.initial_peers = {argv[2]};
  auto dht = hivemind::OpenDhtNode::Create(dht_options);
  auto endpoint = hivemind::Endpoint::Create({});
  if (!dht.ok() || !endpoint.ok()) {
    std::cout << "FAILED " << dht.status() << " " << endpoint.status() << std::endl;
    return 1;
  }
  hivemind::StateServerOptions options;
  options.prefix = "run";
  options.stripe_bytes = static_cast<uint32_t>(std::strtoul(argv[6], nullptr, 10));
  options.serve_interval = absl::Milliseconds(std::atoi(argv[7]));
  auto server = hivemind::StateServer::Create(endpoint->get(), dht->get(), options);
  if (!server.ok()) {
    std::cout << "FAILED " << server.status() << std::endl;
    return 1;
  }
  const absl::Status published = (*server)->Publish(hivemind::testing_state::MakeState(
      std::strtoull(argv[3], nullptr, 10), std::atoll(argv[4]),
      std::strtoull(argv[5], nullptr, 10)));
  const absl::Status advertised =
      published.ok() ? (*server)->WaitForAdvert(absl::Seconds(30)) : published;
  if (!advertised.ok()) {
    std::cout << "FAILED " << advertised << std::endl;
    return 1;
  }
  std::cout << "READY " << (*endpoint)->address() << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  return 0;
}
