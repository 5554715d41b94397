// Bodies of the all-reduce messages (docs/wire_format.md, "All-reduce messages").
//
//   kAllReducePart:   bytes group_id (<= 64), u32 sender, u32 reducer, u32 part,
//                     f32 weight, u8 kind, u64 reference_hash, u8 aggregation,
//                     then the codec payload (the rest of the body)
//   kAllReduceResult: bytes group_id (<= 64), u32 reducer, u32 part, u8 kind, then
//                     the codec payload of the averaged part (the rest of the body)
// kind 0: the payload holds values; kind 1: the payload holds values minus the
// reference whose XXH3-64 is reference_hash (delta mode). aggregation: the sender's
// Aggregation (hivemind/averaging/allreduce.h), which its reducer must share.
#ifndef HIVEMIND_AVERAGING_MESSAGES_H_
#define HIVEMIND_AVERAGING_MESSAGES_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hivemind/averaging/allreduce.h"

namespace hivemind {
namespace internal {

inline constexpr uint32_t kMaxGroupIdSize = 64;

// What a payload holds. Do not renumber.
enum class PayloadKind : uint8_t { kValues = 0, kDelta = 1 };

struct PartHeader {
  absl::string_view group_id;
  uint32_t sender = 0;
  uint32_t reducer = 0;
  uint32_t part = 0;
  float weight = 0.0f;
  PayloadKind kind = PayloadKind::kValues;
  uint64_t reference_hash = 0;  // with kDelta
  Aggregation aggregation = Aggregation::kMean;
};

struct ResultHeader {
  absl::string_view group_id;
  uint32_t reducer = 0;
  uint32_t part = 0;
  PayloadKind kind = PayloadKind::kValues;
};

// Writes a part's header fields into `*body` (cleared first); the caller appends the
// payload.
void WritePartHeader(const PartHeader& header, std::string* body);
void WriteResultHeader(const ResultHeader& header, std::string* body);

// Size of a result header for `group_id` (where its payload starts).
inline size_t ResultHeaderSize(absl::string_view group_id) {
  return 4 + group_id.size() + 4 + 4 + 1;
}

// Parses a body; `*payload` is the rest of it. kDataLoss on malformed bodies (a
// truncated field, an oversized group id, a NaN or Inf weight, a negative weight,
// an unknown kind or aggregation).
absl::Status ParsePart(absl::string_view body, PartHeader* header,
                       absl::string_view* payload);
absl::Status ParseResult(absl::string_view body, ResultHeader* header,
                         absl::string_view* payload);

// The group id of a part body, for routing, or kDataLoss.
absl::StatusOr<absl::string_view> PeekGroupId(absl::string_view body);

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_AVERAGING_MESSAGES_H_
