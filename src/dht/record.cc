#include "dht/record.h"

#include "hivemind/wire/buffer.h"
#include "util/status_macros.h"

namespace hivemind {
namespace internal {
namespace {

// Prefixed to every signed message, so a record signature can never be mistaken for
// a signature of anything else a peer signs with the same key.
constexpr absl::string_view kSigningDomain = "hivemind/dht-record/v3";

// Everything but the signature, in wire order.
void PutFields(const DhtRecord& record, wire::Writer* writer) {
  writer->PutU8(kDhtRecordVersion);
  writer->PutBytes(record.subkey);
  writer->PutBytes(record.writer);
  writer->PutU64(static_cast<uint64_t>(absl::ToUnixMicros(record.stored_at)));
  writer->PutU64(static_cast<uint64_t>(absl::ToUnixMicros(record.expiration)));
  writer->PutBytes(record.value);
}

}  // namespace

std::string DhtRecordSigningMessage(absl::string_view key_id, const DhtRecord& record) {
  wire::Writer writer;
  writer.PutBytes(kSigningDomain);
  writer.PutBytes(key_id);
  PutFields(record, &writer);
  return writer.Release();
}

std::string EncodeDhtRecord(const SignedDhtRecord& signed_record) {
  wire::Writer writer;
  PutFields(signed_record.record, &writer);
  writer.PutBytes(signed_record.signature);
  return writer.Release();
}

absl::StatusOr<std::string> SignDhtRecord(absl::string_view key_id,
                                          const DhtRecord& record,
                                          const KeyPair& signer) {
  if (record.writer != signer.public_key) {
    return absl::InvalidArgumentError("a DHT record's writer must be its signer");
  }
  HIVEMIND_ASSIGN_OR_RETURN(std::string signature,
                            Sign(signer, DhtRecordSigningMessage(key_id, record)));
  return EncodeDhtRecord({record, std::move(signature)});
}

absl::StatusOr<SignedDhtRecord> ParseDhtRecord(absl::string_view data) {
  wire::Reader reader(data);
  uint8_t version = 0;
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU8(&version));
  if (version != kDhtRecordVersion) {
    return absl::DataLossError(version == 1 ? "unsigned (version 1) DHT record"
                               : version == 2
                                   ? "DHT record of version 2 (an older release's)"
                                   : "unknown DHT record version");
  }
  absl::string_view subkey, writer, value, signature;
  uint64_t stored_at = 0, expiration = 0;
  HIVEMIND_RETURN_IF_ERROR(reader.ReadBytes(&subkey, kMaxSubkeySize));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadBytes(&writer, kMaxWriterSize));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU64(&stored_at));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU64(&expiration));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadBytes(&value, kMaxDhtValueSize));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadBytes(&signature, kSignatureSize));
  HIVEMIND_RETURN_IF_ERROR(reader.ExpectEnd());
  if (signature.size() != kSignatureSize) {
    return absl::DataLossError("DHT record signature has the wrong size");
  }
  // Times are microseconds since 1970 that fit an int64 (2^62 is year 148,000).
  constexpr uint64_t kMaxMicros = uint64_t{1} << 62;
  if (stored_at > kMaxMicros || expiration > kMaxMicros) {
    return absl::DataLossError("DHT record time out of range");
  }
  if (expiration < stored_at) {
    return absl::DataLossError("DHT record expires before it was stored");
  }
  SignedDhtRecord out;
  out.record.subkey = std::string(subkey);
  out.record.writer = std::string(writer);
  out.record.value = std::string(value);
  out.record.stored_at = absl::FromUnixMicros(static_cast<int64_t>(stored_at));
  out.record.expiration = absl::FromUnixMicros(static_cast<int64_t>(expiration));
  out.signature = std::string(signature);
  return out;
}

absl::StatusOr<DhtRecord> ReadDhtRecord(absl::string_view key_id,
                                        absl::string_view data) {
  HIVEMIND_ASSIGN_OR_RETURN(SignedDhtRecord parsed, ParseDhtRecord(data));
  if (!VerifySignature(parsed.record.writer,
                       DhtRecordSigningMessage(key_id, parsed.record),
                       parsed.signature)) {
    return absl::UnauthenticatedError("DHT record not signed by its writer for this key");
  }
  return std::move(parsed.record);
}

bool MayReplaceDhtRecord(absl::string_view key_id, absl::string_view current,
                         absl::string_view replacement) {
  absl::StatusOr<DhtRecord> next = ReadDhtRecord(key_id, replacement);
  if (!next.ok()) return false;
  absl::StatusOr<DhtRecord> previous = ReadDhtRecord(key_id, current);
  if (!previous.ok()) return true;
  return previous->writer == next->writer && previous->subkey == next->subkey &&
         previous->stored_at < next->stored_at;
}

}  // namespace internal
}  // namespace hivemind
