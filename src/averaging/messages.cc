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
}

void WriteResultHeader(const ResultHeader& header, std::string* body) {
  body->clear();
  wire::Writer writer(body);
  writer.PutBytes(header.group_id);
  writer.PutU32(header.reducer);
  writer.PutU32(header.part);
}

absl::Status ParsePart(absl::string_view body, PartHeader* header,
                       absl::string_view* payload) {
  wire::Reader reader(body);
  HIVEMIND_RETURN_IF_ERROR(reader.ReadBytes(&header->group_id, kMaxGroupIdSize));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU32(&header->sender));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU32(&header->reducer));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU32(&header->part));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadF32(&header->weight));
  if (header->weight < 0.0f) return absl::DataLossError("part has a negative weight");
  return reader.ReadRaw(reader.remaining(), payload);
}

absl::Status ParseResult(absl::string_view body, ResultHeader* header,
                         absl::string_view* payload) {
  wire::Reader reader(body);
  HIVEMIND_RETURN_IF_ERROR(reader.ReadBytes(&header->group_id, kMaxGroupIdSize));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU32(&header->reducer));
  HIVEMIND_RETURN_IF_ERROR(reader.ReadU32(&header->part));
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
