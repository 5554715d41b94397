// libFuzzer target for DHT records as a node reads them from the network: any parsed
// record re-encodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "dht/record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto record = hivemind::internal::ParseDhtRecord(bytes);
  if (record.ok()) {
    if (record->expiration < record->stored_at) std::abort();
    if (hivemind::internal::EncodeDhtRecord(*record) != bytes) std::abort();
  }
  return 0;
}
