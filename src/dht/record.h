// How a DhtRecord is laid out in an OpenDHT value's data (docs/wire_format.md, "DHT
// records"): u8 version (1), bytes subkey (<= 256), bytes writer (<= 64), u64
// stored_at and u64 expiration (microseconds since the Unix epoch), bytes value
// (<= kMaxDhtValueSize).
#ifndef HIVEMIND_DHT_RECORD_H_
#define HIVEMIND_DHT_RECORD_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hivemind/dht/dht.h"

namespace hivemind {
namespace internal {

inline constexpr uint32_t kMaxSubkeySize = 256;
inline constexpr uint32_t kMaxWriterSize = 64;

std::string EncodeDhtRecord(const DhtRecord& record);

// kDataLoss for anything malformed (unknown version, oversized fields, trailing
// bytes, an expiration before stored_at).
absl::StatusOr<DhtRecord> ParseDhtRecord(absl::string_view data);

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_DHT_RECORD_H_
