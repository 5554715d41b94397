// Writes a few valid, signed DHT records into a directory: the seed corpus of
// dht_record_fuzzer. Records are signed for the full key "fuzz/key". Usage:
// make_dht_seeds DIR
#include <cstdio>
#include <fstream>
#include <string>

#include "dht/record.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  auto keys = hivemind::GenerateKeyPair();
  if (!keys.ok()) {
    std::fprintf(stderr, "%s\n", keys.status().ToString().c_str());
    return 1;
  }
  const std::string& writer = keys->public_key;
  const hivemind::DhtRecord records[] = {
      {"", "", writer, absl::FromUnixMicros(0), absl::FromUnixMicros(0)},
      {"epoch", "7", writer, absl::FromUnixMicros(1000), absl::FromUnixMicros(9000)},
      {writer, std::string(300, 'x'), writer, absl::FromUnixSeconds(1700000000),
       absl::FromUnixSeconds(1700000060)},
  };
  int index = 0;
  for (const auto& record : records) {
    auto data = hivemind::internal::SignDhtRecord("fuzz/key", record, *keys);
    if (!data.ok()) {
      std::fprintf(stderr, "%s\n", data.status().ToString().c_str());
      return 1;
    }
    std::ofstream(std::string(argv[1]) + "/seed" + std::to_string(index++),
                  std::ios::binary)
        << *data;
  }
  return 0;
}
