// A group of peers that average together in one round: its id and ordered members.
// Every member holds an identical GroupInfo (matchmaking sends it; tests build it).
#ifndef HIVEMIND_AVERAGING_GROUP_H_
#define HIVEMIND_AVERAGING_GROUP_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hivemind/export.h"
#include "hivemind/net/identity.h"

namespace hivemind {

// How a member takes part. Do not renumber (sent by matchmaking).
enum class MemberMode : uint8_t {
  kNode = 0,       // contributes data and reduces a span
  kClient = 1,     // behind NAT: contributes data, reduces nothing, accepts no requests
  kAuxiliary = 2,  // reduces a span, contributes no data (weight 0), gets no result
};

// "node", "client", "aux" (or "auxiliary"): the names flags and bindings use.
// kInvalidArgument for any other name, with the accepted ones.
HIVEMIND_EXPORT absl::StatusOr<MemberMode> ParseMemberMode(absl::string_view name);
HIVEMIND_EXPORT absl::string_view MemberModeName(MemberMode mode);  // "node", ...

struct HIVEMIND_EXPORT GroupMember {
  PeerId peer_id;
  std::string address;     // where its endpoint listens; empty for clients
  double bandwidth = 0.0;  // announced, in any consistent unit; 0 = unknown
  MemberMode mode = MemberMode::kNode;
  // Delta mode: ReferenceHash() of the reference this member holds (the previous
  // round's result), or 0 for none. Members with equal nonzero hashes exchange
  // changes against the reference instead of full values.
  uint64_t reference_hash = 0;
  // A small payload the member shares with its group (DecentralizedAverager's
  // StepOptions::gather): every member receives every other member's, at most
  // kMaxUserDataSize bytes.
  std::string user_data;
};

// Largest GroupMember::user_data.
inline constexpr size_t kMaxUserDataSize = 4096;

struct HIVEMIND_EXPORT GroupInfo {
  std::string group_id;              // random bytes, unique per round
  std::vector<GroupMember> members;  // same order on every member
};

}  // namespace hivemind

#endif  // HIVEMIND_AVERAGING_GROUP_H_
