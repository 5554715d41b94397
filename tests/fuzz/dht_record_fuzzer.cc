// libFuzzer target for DHT records as a node reads them from the network: any parsed
// record re-encodes to the same bytes, and verifying its signature (against the key
// the seeds were signed for) never crashes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "dht/record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto parsed = hivemind::internal::ParseDhtRecord(bytes);
  if (parsed.ok()) {
    if (parsed->record.expiration < parsed->record.stored_at) std::abort();
    if (parsed->signature.size() != hivemind::kSignatureSize) std::abort();
    if (hivemind::internal::EncodeDhtRecord(*parsed) != bytes) std::abort();
  }
  // The seeds are signed for "fuzz/key" (make_dht_seeds.cc).
  auto verified = hivemind::internal::ReadDhtRecord("fuzz/key", bytes);
  if (verified.ok() && !parsed.ok()) std::abort();
  return 0;
}
