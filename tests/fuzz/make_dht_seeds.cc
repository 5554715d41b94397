// Writes a few valid DHT records into a directory: the seed corpus of
// dht_record_fuzzer. Usage: make_dht_seeds DIR
#include <cstdio>
#include <fstream>
#include <string>

#include "dht/record.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const hivemind::DhtRecord records[] = {
      {"", "", "", absl::FromUnixMicros(0), absl::FromUnixMicros(0)},
      {"epoch", "7", "writer", absl::FromUnixMicros(1000), absl::FromUnixMicros(9000)},
      {"group", std::string(300, 'x'), std::string(40, 'k'),
       absl::FromUnixSeconds(1700000000), absl::FromUnixSeconds(1700000060)},
  };
  int index = 0;
  for (const auto& record : records) {
    std::ofstream(std::string(argv[1]) + "/seed" + std::to_string(index++),
                  std::ios::binary)
        << hivemind::internal::EncodeDhtRecord(record);
  }
  return 0;
}
