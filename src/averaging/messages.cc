#include "averaging/messages.h"

#include "hivemind/wire/buffer.h"
#include "util/status_macros.h"

namespace hivemind {
namespace internal {

void WritePartHeader(const PartHeader& header, std::string* body) {
  body->clear();
  wire::Writer writer(body);
  writer.PutBytes(header.group_id);
  writer.PutU32(header.sender);
  writer.PutU32(header.reducer);
  writer.PutU32(header.part);
  writer.PutF32(header.weight);
  writer.PutU8(static_cast<uint8_t>(header.kind));
  writer.PutU64(header.reference_hash);
  writer.PutU8(static_cast<uint8_t>(header.aggregation));
}

void WriteResultHeader(const ResultHeader& header, std::string* body) {
  body->clear();
  wire::Writer writer(body);
  writer.PutBytes(header.group_id);
  writer.PutU32(header.reducer);
  writer.PutU32(header.part);
  writer.PutU8(static_cast<uint8_t>(header.kind));
}

namespace {

absl::Status ReadKind(wire::Reader& reader, PayloadKind* kind) {
  uint8_t value = 0;
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU8(&value));
  if (value > static_cast<uint8_t>(PayloadKind::kDelta)) {
    return absl::DataLossError("unknown all-reduce payload kind");
  }
  *kind = static_cast<PayloadKind>(value);
  return absl::OkStatus();
}

}  // namespace

absl::Status ParsePart(absl::string_view body, PartHeader* header,
                       absl::string_view* payload) {
  wire::Reader reader(body);
  HIVEMIND_RETURN_IF_ERROR(reader.ReadBytes(&header->group_id, kMaxGroupIdSize));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU32(&header->sender));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU32(&header->reducer));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU32(&header->part));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadF32(&header->weight));
  if (header->weight < 0.0f) return absl::DataLossError("part has a negative weight");
  HIVEMIND_RETURN_IF_ERROR(ReadKind(reader, &header->kind));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU64(&header->reference_hash));
  uint8_t aggregation = 0;
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU8(&aggregation));
  if (aggregation > static_cast<uint8_t>(Aggregation::kCenteredClip)) {
    return absl::DataLossError("unknown all-reduce aggregation");
  }
  header->aggregation = static_cast<Aggregation>(aggregation);
  return reader.ReadRaw(reader.remaining(), payload);
}

absl::Status ParseResult(absl::string_view body, ResultHeader* header,
                         absl::string_view* payload) {
  wire::Reader reader(body);
  HIVEMIND_RETURN_IF_ERROR(reader.ReadBytes(&header->group_id, kMaxGroupIdSize));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU32(&header->reducer));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU32(&header->part));
  HIVEMIND_RETURN_IF_ERROR(ReadKind(reader, &header->kind));
  return reader.ReadRaw(reader.remaining(), payload);
}

absl::StatusOr<absl::string_view> PeekGroupId(absl::string_view body) {
  wire::Reader reader(body);
  absl::string_view group_id;
  HIVEMIND_RETURN_IF_ERROR(reader.ReadBytes(&group_id, kMaxGroupIdSize));
  return group_id;
}

}  // namespace internal
}  // namespace hivemind
