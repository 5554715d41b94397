#include "dht/record.h"

#include "hivemind/wire/buffer.h"
#include "util/status_macros.h"

namespace hivemind {
namespace internal {
namespace {

constexpr uint8_t kRecordVersion = 1;

}  // namespace

std::string EncodeDhtRecord(const DhtRecord& record) {
  wire::Writer writer;
  writer.PutU8(kRecordVersion);
  writer.PutBytes(record.subkey);
  writer.PutBytes(record.writer);
  writer.PutU64(static_cast<uint64_t>(absl::ToUnixMicros(record.stored_at)));
  writer.PutU64(static_cast<uint64_t>(absl::ToUnixMicros(record.expiration)));
  writer.PutBytes(record.value);
  return writer.Release();
}

absl::StatusOr<DhtRecord> ParseDhtRecord(absl::string_view data) {
  wire::Reader reader(data);
  uint8_t version = 0;
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU8(&version));
  if (version != kRecordVersion) {
    return absl::DataLossError("unknown DHT record version");
  }
  absl::string_view subkey, writer, value;
  uint64_t stored_at = 0, expiration = 0;
  HIVEMIND_RETURN_IF_ERROR(reader.ReadBytes(&subkey, kMaxSubkeySize));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadBytes(&writer, kMaxWriterSize));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU64(&stored_at));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU64(&expiration));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadBytes(&value, kMaxDhtValueSize));
  HIVEMIND_RETURN_IF_ERROR(reader.ExpectEnd());
  // Times are microseconds since 1970 that fit an int64 (2^62 is year 148,000).
  constexpr uint64_t kMaxMicros = uint64_t{1} << 62;
  if (stored_at > kMaxMicros || expiration > kMaxMicros) {
    return absl::DataLossError("DHT record time out of range");
  }
  if (expiration < stored_at) {
    return absl::DataLossError("DHT record expires before it was stored");
  }
  DhtRecord record;
  record.subkey = std::string(subkey);
  record.writer = std::string(writer);
  record.value = std::string(value);
  record.stored_at = absl::FromUnixMicros(static_cast<int64_t>(stored_at));
  record.expiration = absl::FromUnixMicros(static_cast<int64_t>(expiration));
  return record;
}

}  // namespace internal
}  // namespace hivemind
