// Writes valid state adverts, state requests and state blobs into a directory: the
// seed corpus of state_messages_fuzzer. Usage: make_state_seeds DIR
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "averaging/state_messages.h"
#include "hivemind/averaging/state_sharing.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  namespace internal = hivemind::internal;
  std::vector<std::string> seeds;
  internal::StateAdvert advert;
  advert.address = "tcp://10.0.0.1:5555";
  advert.epoch = 12;
  advert.state_bytes = 3 * 4096 + 17;
  advert.stripe_bytes = 4096;
  advert.state_hash = 0x1234;
  advert.stripe_hashes = {1, 2, 3, 4};
  seeds.push_back(internal::EncodeStateAdvert(advert));
  seeds.push_back(internal::EncodeStateRequest({0x1234, 3}));
  hivemind::PeerState state;
  seeds.push_back(hivemind::SerializePeerState(state));
  state.epoch = -3;
  state.metadata = "{\"step\": 7}";
  state.values = {1.0f, -2.5f, 0.0f};
  state.extra = "adam";
  seeds.push_back(hivemind::SerializePeerState(state));
  int index = 0;
  for (const std::string& seed : seeds) {
    std::ofstream(std::string(argv[1]) + "/seed" + std::to_string(index++),
                  std::ios::binary)
        << seed;
  }
  return 0;
}
