#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "averaging/matchmaking_messages.h"
#include "hivemind/averaging/matchmaking.h"
#include "util/mutex.h"

namespace hivemind {
namespace {

// The refusal of a peer that is not (yet) leading: ask it again later.
constexpr char kNotLeading[] = "not leading a group";
// The refusal of a peer waiting on another leader: it may lead again; ask later.
constexpr char kFollowing[] = "following another leader";

void Refuse(const Responder& responder, const std::string& reason,
            std::optional<internal::Declaration> redirect = std::nullopt) {
  internal::JoinResponse no;
  no.reason = reason;
  no.redirect = std::move(redirect);
  responder.Reply(wire::MessageType::kJoinResponse,
                  MakeSharedBytes(internal::EncodeJoinResponse(no)));
}

// The declaration in `record` if it is another peer's, with this peer's schema
// (a declaration whose peer id differs from its subkey, or whose subkey is not the
// record's signer, is ignored: no one can declare in another peer's name).
std::optional<internal::Declaration> CompatibleDeclaration(
    const DhtRecord& record, const internal::Declaration& self) {
  auto d = internal::ParseDeclaration(record.value);
  if (!d.ok() || d->member.peer_id != record.subkey || record.subkey != record.writer ||
      d->member.peer_id == self.member.peer_id || d->schema_hash != self.schema_hash ||
      d->round != self.round) {
    return std::nullopt;
  }
  return *std::move(d);
}

}  // namespace

// The leader side, shared with the endpoint's kJoinRequest handler.
class Matchmaker::State {
 public:
  // Starts a search: not leading yet.
  void Begin(const std::string& key, const internal::Declaration& self, int target) {
    internal::MutexLock lock(&mu_);
    key_ = key;
    self_ = self;
    target_ = target;
    leading_ = false;
    following_.reset();
    searching_ = true;
    pending_.clear();
  }

  // Starts collecting the declarations a listener delivers for `key`.
  void StartHearing(const std::string& key) {
    internal::MutexLock lock(&mu_);
    key_ = key;
    heard_.clear();
  }

  // Drops the declarations heard that have expired (the listener outlives searches).
  void ForgetExpired(absl::Time now) {
    internal::MutexLock lock(&mu_);
    for (auto it = heard_.begin(); it != heard_.end();) {
      it = it->second.expiration <= now ? heard_.erase(it) : std::next(it);
    }
  }

  // A declaration the DHT listener delivered for `key` (ignored if a later search
  // uses another key).
  void Hear(const std::string& key, const DhtRecord& record) {
    internal::MutexLock lock(&mu_);
    // Only a peer's own declarations count: another peer's record under its subkey
    // (with a later stored_at) must not shadow the genuine one.
    if (key != key_ || record.subkey != record.writer) return;
    auto& newest = heard_[record.subkey];
    if (newest.stored_at <= record.stored_at) newest = record;
  }

  // Adds `looked_up` to the declarations heard (newest per subkey) and returns them.
  std::vector<DhtRecord> WithHeard(const std::vector<DhtRecord>& looked_up) {
    internal::MutexLock lock(&mu_);
    for (const DhtRecord& r : looked_up) {
      if (r.subkey != r.writer) continue;  // see Hear
      auto& newest = heard_[r.subkey];
      if (newest.stored_at <= r.stored_at) newest = r;
    }
    std::vector<DhtRecord> out;
    for (const auto& [subkey, record] : heard_) out.push_back(record);
    return out;
  }

  // The search is over (a group formed or time ran out).
  void End() {
    internal::MutexLock lock(&mu_);
    searching_ = false;
  }

  void StartLeading() {
    internal::MutexLock lock(&mu_);
    leading_ = true;
  }

  // While this peer waits on `leader` it does not lead: joiners are refused, told
  // which leader it waits on, and may ask again later. Null: no longer waiting.
  void SetFollowing(const internal::Declaration* leader) {
    internal::MutexLock lock(&mu_);
    following_.reset();
    if (leader != nullptr) following_ = *leader;
  }

  // Stops leading and hands over who is waiting.
  std::vector<std::pair<GroupMember, Responder>> StopLeading() {
    internal::MutexLock lock(&mu_);
    leading_ = false;
    return std::move(pending_);
  }

  int Joiners() {
    internal::MutexLock lock(&mu_);
    return static_cast<int>(pending_.size());
  }

  // Waits until the group is full, or `deadline`, or - from `early` on - until every
  // peer heard declaring under the key has joined and the group has `min_size`:
  // nobody else is coming, so there is no point in waiting for the deadline. With
  // `watch_better`, also until a peer that leads before this one is heard (its
  // declaration came late): returns true then.
  bool WaitFull(absl::Time deadline, absl::Time early, int min_size, bool watch_better) {
    internal::MutexLock lock(&mu_);
    for (;;) {
      const absl::Time now = absl::Now();
      const int size = static_cast<int>(pending_.size()) + 1;
      if (size >= target_ || now >= deadline) return false;
      if (now >= early && size >= min_size && EveryoneHeardJoined(now)) return false;
      if (watch_better && BetterLeaderHeard(now)) return true;
      cv_.WaitUntil(&mu_, std::min(deadline, now + absl::Milliseconds(50)),
                    [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                      return static_cast<int>(pending_.size()) + 1 >= target_;
                    });
    }
  }

  void OnJoin(Message message, Responder responder) {
    auto request = internal::ParseJoinRequest(message.body);
    if (!request.ok()) {
      responder.ReplyError(request.status());
      return;
    }
    internal::MutexLock lock(&mu_);
    std::string refusal;
    if (!searching_) {
      refusal = "not looking for a group";
    } else if (following_) {
      Refuse(responder, kFollowing, following_);
      return;
    } else if (!leading_) {
      refusal = kNotLeading;
    } else if (request->group_key != key_) {
      refusal = "different group key";
    } else if (request->joiner.schema_hash != self_.schema_hash) {
      refusal = "different tensor schema";
    } else if (request->joiner.round != self_.round) {
      refusal = "different round";
    } else if (static_cast<int>(pending_.size()) + 1 >= target_) {
      refusal = "group is full";
    } else {
      for (const auto& [member, waiting] : pending_) {
        if (member.peer_id == request->joiner.member.peer_id) refusal = "already joined";
      }
    }
    if (!refusal.empty()) {
      Refuse(responder, refusal);
      return;
    }
    pending_.emplace_back(request->joiner.member, std::move(responder));
    cv_.SignalAll();
  }

 private:
  // Whether a live declaration heard (same schema, not a client) leads before this
  // peer.
  bool BetterLeaderHeard(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [peer, record] : heard_) {
      if (record.expiration <= now) continue;
      auto declared = CompatibleDeclaration(record, self_);
      if (declared && declared->member.mode != MemberMode::kClient &&
          internal::LeadsBefore(*declared, self_)) {
        return true;
      }
    }
    return false;
  }

  // Whether every live declaration heard (same schema, not this peer) is a joiner.
  bool EveryoneHeardJoined(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [peer, record] : heard_) {
      if (record.expiration <= now || !CompatibleDeclaration(record, self_)) continue;
      const std::string& id = peer;  // (lambdas cannot capture structured bindings)
      const bool joined =
          std::any_of(pending_.begin(), pending_.end(),
                      [&id](const auto& joiner) { return joiner.first.peer_id == id; });
      if (!joined) return false;
    }
    return true;
  }

  internal::Mutex mu_;
  internal::CondVar cv_;
  std::string key_ ABSL_GUARDED_BY(mu_);
  internal::Declaration self_ ABSL_GUARDED_BY(mu_);
  int target_ ABSL_GUARDED_BY(mu_) = 0;
  bool leading_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<internal::Declaration> following_ ABSL_GUARDED_BY(mu_);
  bool searching_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<GroupMember, Responder>> pending_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, DhtRecord> heard_ ABSL_GUARDED_BY(mu_);
};

Matchmaker::Matchmaker(Endpoint* endpoint, Dht* dht)
    : endpoint_(endpoint), dht_(dht), state_(std::make_shared<State>()) {
  std::weak_ptr<State> weak = state_;
  endpoint_->SetHandler(wire::MessageType::kJoinRequest,
                        [weak](Message message, Responder responder) {
                          if (auto state = weak.lock()) {
                            state->OnJoin(std::move(message), std::move(responder));
                          } else {
                            responder.ReplyError(absl::UnavailableError("shutting down"));
                          }
                        });
}

Matchmaker::~Matchmaker() {
  if (listen_token_) dht_->CancelListen(*listen_token_);
  endpoint_->SetHandler(wire::MessageType::kJoinRequest, nullptr);
}

void Matchmaker::ListenTo(const std::string& key) {
  if (listen_token_ && key == listened_key_) {
    state_->ForgetExpired(absl::Now());
    return;
  }
  if (listen_token_) dht_->CancelListen(*listen_token_);
  listen_token_.reset();
  listened_key_ = key;
  state_->StartHearing(key);
  std::weak_ptr<State> weak = state_;
  absl::StatusOr<uint64_t> token =
      dht_->Listen(key, [weak, key](const DhtRecord& record) {
        if (auto state = weak.lock()) state->Hear(key, record);
      });
  if (token.ok()) listen_token_ = *token;
}

namespace {

constexpr absl::Duration kLivenessTimeout = absl::Seconds(1);
constexpr absl::Duration kLookupTimeout = absl::Milliseconds(500);

absl::Status Validate(const MatchmakingOptions& o) {
  if (o.prefix.empty() || o.self.peer_id.empty()) {
    return absl::InvalidArgumentError("prefix and self.peer_id are required");
  }
  if (o.round.size() > 256) return absl::InvalidArgumentError("round is over 256 bytes");
  if (o.min_group_size < 1 || o.target_group_size < o.min_group_size) {
    return absl::InvalidArgumentError("need 1 <= min_group_size <= target_group_size");
  }
  if (o.self.mode != MemberMode::kClient && o.self.address.empty()) {
    return absl::InvalidArgumentError("a peer that can lead needs an address");
  }
  return absl::OkStatus();
}

// Declared peers that come before `self` and can lead, in leading order.
std::vector<internal::Declaration> Candidates(const std::vector<DhtRecord>& records,
                                              const internal::Declaration& self,
                                              bool any_order) {
  std::vector<internal::Declaration> out;
  for (const DhtRecord& record : records) {
    auto d = CompatibleDeclaration(record, self);
    if (!d || d->member.mode == MemberMode::kClient) continue;
    if (any_order || internal::LeadsBefore(*d, self)) out.push_back(*std::move(d));
  }
  std::sort(out.begin(), out.end(), internal::LeadsBefore);
  return out;
}

// Appends the tips (leaders named in refusals) that could lead this peer - live,
// compatible, not skipped, before `self` unless `any_order` - to `candidates`, and
// keeps the whole list in leading order.
void AddTips(const std::map<PeerId, internal::Declaration>& tips,
             const std::set<PeerId>& skip, const internal::Declaration& self,
             bool any_order, std::vector<internal::Declaration>* candidates) {
  const absl::Time now = absl::Now();
  for (const auto& [id, tip] : tips) {
    if (skip.count(id) || id == self.member.peer_id || tip.deadline <= now ||
        tip.schema_hash != self.schema_hash || tip.round != self.round ||
        tip.member.mode == MemberMode::kClient || tip.member.address.empty() ||
        !(any_order || internal::LeadsBefore(tip, self))) {
      continue;
    }
    candidates->push_back(tip);
  }
  std::sort(candidates->begin(), candidates->end(), internal::LeadsBefore);
}

std::string RandomGroupId() {
  std::random_device rd;
  std::string id(16, '\0');
  for (char& c : id) c = static_cast<char>(rd());
  return id;
}

}  // namespace

absl::StatusOr<MatchedGroup> Matchmaker::Follow(const std::string& key,
                                                const internal::Declaration& self,
                                                const MatchmakingOptions& options,
                                                absl::Time stop_following,
                                                bool any_order) {
  std::set<PeerId> skip;
  // Leaders that refusing peers said they wait on: this peer's view of the DHT may
  // miss them (a lookup and the listener can both fail to reach a declaration).
  std::map<PeerId, internal::Declaration> tips;
  while (absl::Now() < stop_following) {
    // A short lookup: declarations arrive as they are found, and a slow node must
    // not eat the time left to follow or lead.
    auto records = dht_->Get(key, std::min(kLookupTimeout, options.matchmaking_time / 4));
    if (!records.ok()) return records.status();
    std::vector<internal::Declaration> candidates;
    for (auto& c : Candidates(state_->WithHeard(*records), self, any_order)) {
      tips.erase(c.member.peer_id);
      if (!skip.count(c.member.peer_id)) candidates.push_back(std::move(c));
    }
    AddTips(tips, skip, self, any_order, &candidates);
    if (candidates.empty()) break;  // nobody to follow: lead
    for (const internal::Declaration& leader : candidates) {
      absl::StatusOr<internal::JoinResponse> response = AskToJoin(key, self, leader);
      if (response.ok() && response->accepted) {
        return MatchedGroup{std::move(response->group),
                            static_cast<int>(response->your_index)};
      }
      // Not leading, or following someone for now: it may lead later, ask again.
      // Dead, full or incompatible: skip it for good.
      if (!response.ok() ||
          (response->reason != kNotLeading && response->reason != kFollowing)) {
        skip.insert(leader.member.peer_id);
      }
      if (response.ok() && response->redirect) {
        tips.emplace(response->redirect->member.peer_id, *response->redirect);
      }
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::NotFoundError("no leader accepted this peer");
}

absl::StatusOr<internal::JoinResponse> Matchmaker::AskToJoin(
    const std::string& key, const internal::Declaration& self,
    const internal::Declaration& leader) {
  const absl::Time until = std::min(leader.deadline, self.deadline) + absl::Seconds(2);
  // A leader answers a join only when it assembles; first make sure it is alive
  // (every endpoint answers kPing with kPong), so a dead candidate costs a second,
  // not its deadline.
  auto alive = endpoint_->Call(leader.member.address, wire::MessageType::kPing,
                               MakeSharedBytes(""), kLivenessTimeout);
  if (!alive.ok()) return alive.status();
  if (alive->header.type != wire::MessageType::kPong) {
    return absl::UnavailableError(absl::StrCat(
        "the leader answered a ping with ", wire::MessageTypeName(alive->header.type)));
  }
  internal::JoinRequest request{key, self};
  state_->SetFollowing(&leader);
  auto reply = endpoint_->Call(leader.member.address, wire::MessageType::kJoinRequest,
                               MakeSharedBytes(internal::EncodeJoinRequest(request)),
                               std::max(absl::ZeroDuration(), until - absl::Now()));
  state_->SetFollowing(nullptr);
  if (!reply.ok()) return reply.status();
  auto response = internal::ParseJoinResponse(reply->body);
  if (!response.ok()) return response.status();
  if (response->accepted &&
      response->group.members[response->your_index].peer_id != self.member.peer_id) {
    return absl::DataLossError("the leader placed this peer wrongly");
  }
  return response;
}

absl::StatusOr<MatchedGroup> Matchmaker::FindGroup(const MatchmakingOptions& options) {
  absl::Status valid = Validate(options);
  if (!valid.ok()) return valid;
  // Declarations also arrive through a DHT listener: a lookup that is slow (a loaded
  // machine, a large swarm) may return before finding them; the listener keeps
  // searching for the whole attempt (and stays for the next one under this key).
  const std::string key = absl::StrCat(options.prefix, ".group.", options.group_bits);
  ListenTo(key);
  absl::StatusOr<MatchedGroup> result = Search(options);
  state_->End();
  return result;
}

// One search, phase by phase (T = matchmaking_time, from the declaration's start;
// each phase ends early when it found a group):
//   declare  store the declaration (waiting at most T/4 for the DHT), settle
//   follow   ask the declared leaders before this peer until 2T/3 (a client never
//            leads: any leader, until T)                                  (Follow)
//   lead     gather joiners until full or 2T/3, assembling early with min_group_size
//            from T/4 after leading began; a better leader turning up late: hand
//            the joiners over, follow it, lead again                        (Lead)
//   rescue   still alone: follow the leaders before this peer until 5T/6, lead
//            again; still alone: follow any leader until T      (RescueLoneLeader)
//   assemble at T (or full): the group, or kDeadlineExceeded under min_group_size
//                                                                       (Assemble)
absl::StatusOr<MatchedGroup> Matchmaker::Search(const MatchmakingOptions& options) {
  const std::string key = absl::StrCat(options.prefix, ".group.", options.group_bits);
  internal::Declaration self{options.self, options.schema_hash,
                             absl::Now() + options.matchmaking_time, options.round};
  state_->Begin(key, self, options.target_group_size);
  // A declaration the DHT does not confirm soon (dead nodes among the key's closest
  // after churn: each costs OpenDHT a few timed-out requests) goes on in the
  // background and may still be found. Meanwhile this peer can follow the leaders it
  // finds, so it searches anyway rather than lose the round: after kills, waiting for
  // the confirmation left whole swarms without a group for many rounds.
  absl::Status declared =
      dht_->Store(key, self.member.peer_id, internal::EncodeDeclaration(self),
                  self.deadline, options.matchmaking_time / 4, &endpoint_->identity());
  if (absl::IsCancelled(declared) || absl::IsInvalidArgument(declared)) {
    return absl::Status(declared.code(),
                        absl::StrCat("cannot declare in the DHT: ", declared.message()));
  }
  absl::SleepFor(options.settle_time);

  // Follow the first candidate that takes us. A candidate that is not leading yet
  // may still be trying its own candidates: ask again shortly. Dead, full or
  // incompatible candidates are skipped for good. The last third of the time is kept
  // for leading.
  // A client never leads, so it may ask every declared peer, until its deadline.
  if (options.self.mode == MemberMode::kClient) {
    auto followed = Follow(key, self, options, self.deadline, /*any_order=*/true);
    if (followed.ok()) return followed;
    return absl::DeadlineExceededError("no leader accepted this client-mode peer");
  }
  auto followed =
      Follow(key, self, options, self.deadline - options.matchmaking_time / 3, false);
  if (followed.ok()) return followed;

  return Lead(key, self, options);
}

absl::StatusOr<MatchedGroup> Matchmaker::Lead(const std::string& key,
                                              const internal::Declaration& self,
                                              const MatchmakingOptions& options) {
  // Lead: gather joiners until full or the deadline. A leader still alone near the
  // end asks the leaders before it in (deadline, id) order to take it; the first of
  // several lone leaders has none and keeps leading, so the others end up with it.
  // (Following only peers before oneself keeps the waits acyclic: no two peers ever
  // wait on each other.)
  state_->StartLeading();
  // Early assembly only after a grace period: peers a little behind still declare.
  const absl::Time early = options.assemble_early
                               ? absl::Now() + options.matchmaking_time / 4
                               : absl::InfiniteFuture();
  const absl::Time lead_until = self.deadline - options.matchmaking_time / 3;
  if (state_->WaitFull(lead_until, early, options.min_group_size,
                       /*watch_better=*/true)) {
    // A leader before this one turned up late (a lookup missed it): hand the joiners
    // over - they are told to ask again, and find that leader too - and ask it.
    for (auto& [member, responder] : state_->StopLeading())
      Refuse(responder, kNotLeading);
    auto handed = Follow(key, self, options, lead_until, /*any_order=*/false);
    if (handed.ok()) return handed;
    state_->StartLeading();
    state_->WaitFull(lead_until, early, options.min_group_size, false);
  }
  if (state_->Joiners() == 0) {
    auto rescued = RescueLoneLeader(key, self, options, early);
    if (rescued.has_value()) return *std::move(rescued);
  }
  state_->WaitFull(self.deadline, early, options.min_group_size, false);
  return Assemble(self, options);
}

std::optional<MatchedGroup> Matchmaker::RescueLoneLeader(
    const std::string& key, const internal::Declaration& self,
    const MatchmakingOptions& options, absl::Time early) {
  // Still alone: first ask the leaders before this peer (the first of several lone
  // leaders has none and keeps leading a while, so the others gather with it), then,
  // near the end, any leader with room.
  const absl::Time last = self.deadline - options.matchmaking_time / 6;
  state_->StopLeading();
  auto late = Follow(key, self, options, last, /*any_order=*/false);
  if (late.ok()) return *std::move(late);
  state_->StartLeading();
  state_->WaitFull(last, early, options.min_group_size, false);
  if (state_->Joiners() > 0) return std::nullopt;
  state_->StopLeading();
  late = Follow(key, self, options, self.deadline, /*any_order=*/true);
  if (late.ok()) return *std::move(late);
  state_->StartLeading();
  return std::nullopt;
}

absl::StatusOr<MatchedGroup> Matchmaker::Assemble(const internal::Declaration& self,
                                                  const MatchmakingOptions& options) {
  auto joiners = state_->StopLeading();
  if (static_cast<int>(joiners.size()) + 1 < options.min_group_size) {
    for (auto& [member, responder] : joiners) {
      Refuse(responder, "group too small at the leader's deadline");
    }
    return absl::DeadlineExceededError(absl::StrCat("found ", joiners.size() + 1,
                                                    " peers, fewer than min_group_size ",
                                                    options.min_group_size));
  }
  GroupInfo group;
  group.group_id = RandomGroupId();
  group.members.push_back(self.member);
  for (auto& [member, responder] : joiners) group.members.push_back(member);
  std::mt19937_64 rng(std::random_device{}());
  std::shuffle(group.members.begin(), group.members.end(), rng);
  auto index_of = [&group](const PeerId& id) {
    for (size_t i = 0; i < group.members.size(); ++i) {
      if (group.members[i].peer_id == id) return static_cast<uint32_t>(i);
    }
    return uint32_t{0};
  };
  for (auto& [member, responder] : joiners) {
    internal::JoinResponse yes;
    yes.accepted = true;
    yes.group = group;
    yes.your_index = index_of(member.peer_id);
    responder.Reply(wire::MessageType::kJoinResponse,
                    MakeSharedBytes(internal::EncodeJoinResponse(yes)));
  }
  return MatchedGroup{group, static_cast<int>(index_of(self.member.peer_id))};
}

}  // namespace hivemind
