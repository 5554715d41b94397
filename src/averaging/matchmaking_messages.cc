#include "averaging/matchmaking_messages.h"

#include <cstring>

#include "averaging/messages.h"
#include "util/status_macros.h"

namespace hivemind {
namespace internal {
namespace {

constexpr uint32_t kMaxIdSize = 64;
constexpr uint32_t kMaxAddressSize = 256;
constexpr uint32_t kMaxKeySize = 256;
constexpr uint32_t kMaxMembers = 1024;
constexpr uint32_t kMaxReasonSize = 1024;
constexpr uint32_t kMaxRoundSize = 256;

void PutMember(wire::Writer& w, const GroupMember& m) {
  w.PutBytes(m.peer_id);
  w.PutBytes(m.address);
  uint64_t bits;
  std::memcpy(&bits, &m.bandwidth, sizeof(bits));
  w.PutU64(bits);
  w.PutU8(static_cast<uint8_t>(m.mode));
  w.PutU64(m.reference_hash);
  w.PutBytes(m.user_data);
}

absl::Status ReadMember(wire::Reader& r, GroupMember* m) {
  absl::string_view id, address, user_data;
  uint64_t bits = 0;
  uint8_t mode = 0;
  HIVEMIND_RETURN_IF_ERROR(r.ReadBytes(&id, kMaxIdSize));
  HIVEMIND_RETURN_IF_ERROR(r.ReadBytes(&address, kMaxAddressSize));
  HIVEMIND_RETURN_IF_ERROR(r.ReadU64(&bits));
  HIVEMIND_RETURN_IF_ERROR(r.ReadU8(&mode));
  HIVEMIND_RETURN_IF_ERROR(r.ReadU64(&m->reference_hash));
  HIVEMIND_RETURN_IF_ERROR(r.ReadBytes(&user_data, kMaxUserDataSize));
  if (mode > static_cast<uint8_t>(MemberMode::kAuxiliary)) {
    return absl::DataLossError("unknown member mode");
  }
  double bandwidth;
  std::memcpy(&bandwidth, &bits, sizeof(bandwidth));
  if (!(bandwidth >= 0.0) || bandwidth > 1e18) {
    return absl::DataLossError("member bandwidth is not a finite non-negative number");
  }
  m->peer_id = std::string(id);
  m->address = std::string(address);
  m->user_data = std::string(user_data);
  m->bandwidth = bandwidth;
  m->mode = static_cast<MemberMode>(mode);
  return absl::OkStatus();
}

void PutDeclaration(wire::Writer& w, const Declaration& d) {
  PutMember(w, d.member);
  w.PutU64(d.schema_hash);
  w.PutU64(static_cast<uint64_t>(absl::ToUnixMicros(d.deadline)));
  w.PutBytes(d.round);
}

absl::Status ReadDeclaration(wire::Reader& r, Declaration* d) {
  HIVEMIND_RETURN_IF_ERROR(ReadMember(r, &d->member));
  uint64_t deadline = 0;
  HIVEMIND_RETURN_IF_ERROR(r.ReadU64(&d->schema_hash));
  HIVEMIND_RETURN_IF_ERROR(r.ReadU64(&deadline));
  if (deadline > (uint64_t{1} << 62)) return absl::DataLossError("deadline out of range");
  d->deadline = absl::FromUnixMicros(static_cast<int64_t>(deadline));
  absl::string_view round;
  HIVEMIND_RETURN_IF_ERROR(r.ReadBytes(&round, kMaxRoundSize));
  d->round = std::string(round);
  return absl::OkStatus();
}

}  // namespace

std::string EncodeDeclaration(const Declaration& d) {
  wire::Writer w;
  PutDeclaration(w, d);
  return w.Release();
}

absl::StatusOr<Declaration> ParseDeclaration(absl::string_view body) {
  wire::Reader r(body);
  Declaration d;
  HIVEMIND_RETURN_IF_ERROR(ReadDeclaration(r, &d));
  HIVEMIND_RETURN_IF_ERROR(r.ExpectEnd());
  return d;
}

std::string EncodeJoinRequest(const JoinRequest& req) {
  wire::Writer w;
  w.PutBytes(req.group_key);
  PutDeclaration(w, req.joiner);
  return w.Release();
}

absl::StatusOr<JoinRequest> ParseJoinRequest(absl::string_view body) {
  wire::Reader r(body);
  JoinRequest req;
  absl::string_view key;
  HIVEMIND_RETURN_IF_ERROR(r.ReadBytes(&key, kMaxKeySize));
  HIVEMIND_RETURN_IF_ERROR(ReadDeclaration(r, &req.joiner));
  HIVEMIND_RETURN_IF_ERROR(r.ExpectEnd());
  req.group_key = std::string(key);
  return req;
}

std::string EncodeJoinResponse(const JoinResponse& resp) {
  wire::Writer w;
  w.PutU8(resp.accepted ? 1 : 0);
  if (!resp.accepted) {
    w.PutBytes(resp.reason.substr(0, kMaxReasonSize));
    w.PutU8(resp.redirect ? 1 : 0);
    if (resp.redirect) PutDeclaration(w, *resp.redirect);
    return w.Release();
  }
  w.PutBytes(resp.group.group_id);
  w.PutU32(static_cast<uint32_t>(resp.group.members.size()));
  for (const GroupMember& m : resp.group.members) PutMember(w, m);
  w.PutU32(resp.your_index);
  return w.Release();
}

absl::StatusOr<JoinResponse> ParseJoinResponse(absl::string_view body) {
  wire::Reader r(body);
  JoinResponse resp;
  uint8_t accepted = 0;
  HIVEMIND_RETURN_IF_ERROR(r.ReadU8(&accepted));
  if (accepted > 1) return absl::DataLossError("bad join response flag");
  resp.accepted = accepted == 1;
  absl::string_view text;
  if (!resp.accepted) {
    HIVEMIND_RETURN_IF_ERROR(r.ReadBytes(&text, kMaxReasonSize));
    uint8_t has_redirect = 0;
    HIVEMIND_RETURN_IF_ERROR(r.ReadU8(&has_redirect));
    if (has_redirect > 1) return absl::DataLossError("bad join redirect flag");
    if (has_redirect == 1)
      HIVEMIND_RETURN_IF_ERROR(ReadDeclaration(r, &resp.redirect.emplace()));
    HIVEMIND_RETURN_IF_ERROR(r.ExpectEnd());
    resp.reason = std::string(text);
    return resp;
  }
  uint32_t count = 0;
  HIVEMIND_RETURN_IF_ERROR(r.ReadBytes(&text, kMaxGroupIdSize));
  HIVEMIND_RETURN_IF_ERROR(r.ReadU32(&count));
  if (count == 0 || count > kMaxMembers) return absl::DataLossError("bad group size");
  resp.group.group_id = std::string(text);
  resp.group.members.resize(count);
  for (GroupMember& m : resp.group.members) HIVEMIND_RETURN_IF_ERROR(ReadMember(r, &m));
  HIVEMIND_RETURN_IF_ERROR(r.ReadU32(&resp.your_index));
  HIVEMIND_RETURN_IF_ERROR(r.ExpectEnd());
  if (resp.your_index >= count) return absl::DataLossError("index outside the group");
  return resp;
}

}  // namespace internal
}  // namespace hivemind
