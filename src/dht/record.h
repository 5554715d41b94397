// How a DhtRecord is laid out in an OpenDHT value's data (docs/wire_format.md, "DHT
// records"): u8 version (3), bytes subkey (<= 256), bytes writer (<= 64), u64
// stored_at and u64 expiration (microseconds since the Unix epoch), bytes value
// (<= kMaxDhtValueSize), bytes signature (64): the writer's Ed25519 signature of
// everything before it, prefixed by a domain tag and the key's id, so a record can
// neither be forged nor moved to another key.
//
// The key id is what the storing DHT node sees of the key: for OpenDhtNode the
// 20-byte OpenDHT hash of "{run_id}/{key}". So a storing node can verify a record
// too (see opendht_node.cc).
#ifndef HIVEMIND_DHT_RECORD_H_
#define HIVEMIND_DHT_RECORD_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hivemind/dht/dht.h"
#include "hivemind/net/identity.h"

namespace hivemind {
namespace internal {

inline constexpr uint8_t kDhtRecordVersion = 3;
inline constexpr uint32_t kMaxSubkeySize = 256;
inline constexpr uint32_t kMaxWriterSize = 64;

// A record as it travels: the fields and the writer's signature.
struct SignedDhtRecord {
  DhtRecord record;
  std::string signature;  // kSignatureSize bytes once parsed
};

// The bytes the writer signs for `record` stored under the key `key_id`.
std::string DhtRecordSigningMessage(absl::string_view key_id, const DhtRecord& record);

// Encodes the fields and the signature as they are (tests and fuzzers forge records
// with it; SignDhtRecord is what a node stores).
std::string EncodeDhtRecord(const SignedDhtRecord& signed_record);

// Signs `record` for the key `key_id` with `signer` and encodes it. kInvalidArgument
// if record.writer is not signer.public_key or the key pair is malformed.
absl::StatusOr<std::string> SignDhtRecord(absl::string_view key_id,
                                          const DhtRecord& record, const KeyPair& signer);

// Parses without checking the signature. kDataLoss for anything malformed (another
// version, e.g. an unsigned version-1 record; oversized fields; a signature that is
// not kSignatureSize bytes; trailing bytes; an expiration before stored_at).
// Versions 1 (unsigned) and 2 (signed over the key's name) are no longer read.
absl::StatusOr<SignedDhtRecord> ParseDhtRecord(absl::string_view data);

// Parses and verifies a record read under the key `key_id`: kDataLoss as
// ParseDhtRecord, kUnauthenticated when the signature is not the writer's for this
// key and fields.
absl::StatusOr<DhtRecord> ReadDhtRecord(absl::string_view key_id, absl::string_view data);

// Whether a node that holds `current` under some value id may replace it by
// `replacement`, both stored under the key `key_id`: only by a record that verifies,
// by the same writer for the same subkey, stored later (no forgery, no rollback to
// an older record). Anything that verifies may replace bytes that do not.
bool MayReplaceDhtRecord(absl::string_view key_id, absl::string_view current,
                         absl::string_view replacement);

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_DHT_RECORD_H_
