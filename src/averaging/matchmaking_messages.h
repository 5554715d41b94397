// Bodies of the matchmaking messages and of the DHT declaration (docs/wire_format.md,
// "Matchmaking messages").
#ifndef HIVEMIND_AVERAGING_MATCHMAKING_MESSAGES_H_
#define HIVEMIND_AVERAGING_MATCHMAKING_MESSAGES_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "hivemind/averaging/group.h"
#include "hivemind/wire/buffer.h"

namespace hivemind {
namespace internal {

// What a peer declares in the DHT (and repeats in its join request).
struct Declaration {
  GroupMember member;
  uint64_t schema_hash = 0;
  absl::Time deadline;
  std::string round;  // peers meet only peers of the same round
};

struct JoinRequest {
  std::string group_key;
  Declaration joiner;
};

// A leader's answer: the assembled group and the joiner's index, or a refusal.
struct JoinResponse {
  bool accepted = false;
  std::string reason;  // when refused
  // When refused by a peer that is waiting on a leader: that leader's declaration
  // (a hint the joiner may ask, since its own view of the DHT can miss it).
  std::optional<Declaration> redirect;
  GroupInfo group;  // when accepted
  uint32_t your_index = 0;
};

std::string EncodeDeclaration(const Declaration& d);
absl::StatusOr<Declaration> ParseDeclaration(absl::string_view body);

std::string EncodeJoinRequest(const JoinRequest& r);
absl::StatusOr<JoinRequest> ParseJoinRequest(absl::string_view body);

std::string EncodeJoinResponse(const JoinResponse& r);
absl::StatusOr<JoinResponse> ParseJoinResponse(absl::string_view body);

// (deadline, peer id) order: the smaller leads.
inline bool LeadsBefore(const Declaration& a, const Declaration& b) {
  return a.deadline != b.deadline ? a.deadline < b.deadline
                                  : a.member.peer_id < b.member.peer_id;
}

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_AVERAGING_MATCHMAKING_MESSAGES_H_
