// The names of the averaging layer's enums, for flags and bindings: one parser each.
#include "absl/strings/str_cat.h"
#include "hivemind/averaging/allreduce.h"
#include "hivemind/averaging/group.h"

namespace hivemind {

absl::StatusOr<MemberMode> ParseMemberMode(absl::string_view name) {
  if (name == "node") return MemberMode::kNode;
  if (name == "client") return MemberMode::kClient;
  if (name == "aux" || name == "auxiliary") return MemberMode::kAuxiliary;
  return absl::InvalidArgumentError(
      absl::StrCat("mode must be node, client or aux, not \"", name, "\""));
}

absl::string_view MemberModeName(MemberMode mode) {
  switch (mode) {
    case MemberMode::kNode:
      return "node";
    case MemberMode::kClient:
      return "client";
    case MemberMode::kAuxiliary:
      return "aux";
  }
  return "unknown";
}

absl::StatusOr<Aggregation> ParseAggregation(absl::string_view name) {
  if (name == "mean") return Aggregation::kMean;
  if (name == "centered_clip") return Aggregation::kCenteredClip;
  return absl::InvalidArgumentError(
      absl::StrCat("aggregation must be mean or centered_clip, not \"", name, "\""));
}

absl::string_view AggregationName(Aggregation method) {
  switch (method) {
    case Aggregation::kMean:
      return "mean";
    case Aggregation::kCenteredClip:
      return "centered_clip";
  }
  return "unknown";
}

}  // namespace hivemind
