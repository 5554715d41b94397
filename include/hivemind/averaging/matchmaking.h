// Matchmaking: peers that want to average at about the same time find each other in
// the DHT and agree on a group (its id and ordered member list).
//
// Protocol (docs/wire_format.md, "Matchmaking messages"):
//  1. A peer declares itself under `{prefix}.group.{group_bits}` (subkey: its peer id;
//     value: its address, the schema hash and the round), valid until its deadline.
//     It waits at most a quarter of the matchmaking time for the DHT to confirm the
//     store, and searches on either way (an unconfirmed store goes on in the DHT).
//     The key is the same for every round (one DHT search per key, however many
//     rounds: per-round keys made each DHT node keep a search per round for an hour);
//     declarations of other rounds are ignored.
//  2. After a short settling time it reads the declarations. Candidates are declared
//     peers of the same round with the same schema hash whose (deadline, peer id) is
//     smaller than its own; it asks them to lead it, smallest first (kJoinRequest).
//  3. A peer that no candidate accepts leads: it accepts joiners until the group has
//     `target_group_size` members, or until its deadline with at least
//     `min_group_size`, or (with assemble_early, after a grace of a quarter of the
//     matchmaking time) until every peer it has seen declared (through lookups and
//     a DHT listener) has joined; then it shuffles the members, draws a random
//     group id and answers every pending join with the group (kJoinResponse).
//  4. A leader that hears of a peer leading before it (its declaration arrived
//     late) hands its joiners over - it refuses them as "not leading" so they ask
//     again and find that peer too - and asks that peer to take it.
//  5. A leader still alone near its deadline stops leading and asks the leaders
//     before it to take it (the first of several lone leaders keeps leading, so
//     the others gather with it); still alone in the last sixth of its time, it
//     asks any leader with room.
//  A leader refuses a joiner with a different group key or schema hash, or when
//  full; a peer that is not leading (still searching, or waiting on another leader)
//  refuses, and is asked again later: it may lead yet. A peer waiting on a leader
//  names that leader in its refusal, and the joiner asks it too: a joiner whose
//  view of the DHT misses a leader (lookups and listener can both fail to reach a
//  declaration) still finds it through that leader's followers. Only non-leaders ask and
//  only leaders are waited on (a peer stops leading before it asks), so no two peers wait
//  on each other; every request has a deadline, so nothing waits forever. Views of
//  the DHT that differ can still split peers into several groups, or leave one
//  alone.
#ifndef HIVEMIND_AVERAGING_MATCHMAKING_H_
#define HIVEMIND_AVERAGING_MATCHMAKING_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hivemind/averaging/group.h"
#include "hivemind/dht/dht.h"
#include "hivemind/export.h"
#include "hivemind/net/endpoint.h"

namespace hivemind {
namespace internal {
struct Declaration;
struct JoinResponse;
}  // namespace internal

struct HIVEMIND_EXPORT MatchmakingOptions {
  // DHT key prefix of this averager (for example "{run}.grads"), the same for every
  // round. Required.
  std::string prefix;

  // The round (for example an epoch number): peers meet only peers of the same
  // round. Use a new one per round: the declarations of the previous round are still
  // in the DHT until they expire. At most 256 bytes. Default: "".
  std::string round;

  // Moshpit group bits: only peers with the same bits meet. Default: "" (everyone).
  std::string group_bits;

  // Hash of the averaged tensors' shapes and types: peers with different schemas never
  // land in one group. Default: 0.
  uint64_t schema_hash = 0;

  int target_group_size = 16;  // Default: 16.
  int min_group_size = 2;      // Default: 2.

  // How long to look for a group; also the deadline a leader assembles at.
  // Default: 5 s.
  absl::Duration matchmaking_time = absl::Seconds(5);

  // A leader also assembles - a quarter of matchmaking_time after it began leading -
  // as soon as every peer it has heard declaring has joined, instead of waiting for
  // a full group or its deadline. Faster when fewer peers than target_group_size
  // take part; a peer whose declaration spreads later than that misses the group.
  // Default: false (wait for a full group or the deadline).
  bool assemble_early = false;

  // Time given to declarations to spread before reading them. Default: 300 ms.
  absl::Duration settle_time = absl::Milliseconds(300);

  // This member's entry (peer id, address, bandwidth, mode, reference hash). The
  // address must be the endpoint's (empty for client mode). Required.
  GroupMember self;
};

struct HIVEMIND_EXPORT MatchedGroup {
  GroupInfo group;
  int my_index = 0;
};

// Finds groups over one endpoint and one DHT. Registers itself as the endpoint's
// kJoinRequest handler.
//
// Thread safety: FindGroup calls must not overlap on one Matchmaker (one search at a
// time); construction and destruction from one thread. The endpoint and the DHT must
// outlive it.
class HIVEMIND_EXPORT Matchmaker {
 public:
  Matchmaker(Endpoint* endpoint, Dht* dht);
  ~Matchmaker();
  Matchmaker(const Matchmaker&) = delete;
  Matchmaker& operator=(const Matchmaker&) = delete;

  // Looks for a group until options.matchmaking_time has passed. Returns the group
  // (every member gets the same GroupInfo, and `my_index` is this member's place),
  // or kDeadlineExceeded when no group of at least min_group_size formed in time,
  // kInvalidArgument for bad options, kCancelled when the DHT node shut down.
  absl::StatusOr<MatchedGroup> FindGroup(const MatchmakingOptions& options);

 private:
  class State;
  // The phases of a search (the table at Search in matchmaker.cc).
  absl::StatusOr<MatchedGroup> Search(const MatchmakingOptions& options);
  absl::StatusOr<MatchedGroup> Lead(const std::string& key,
                                    const internal::Declaration& self,
                                    const MatchmakingOptions& options);
  // A group found by following after all, or none (this peer leads again).
  std::optional<MatchedGroup> RescueLoneLeader(const std::string& key,
                                               const internal::Declaration& self,
                                               const MatchmakingOptions& options,
                                               absl::Time early);
  // Ends leading: the group of this leader and its joiners, or kDeadlineExceeded.
  absl::StatusOr<MatchedGroup> Assemble(const internal::Declaration& self,
                                        const MatchmakingOptions& options);
  // Asks declared leaders (those before `self` unless `any_order`) to take this
  // peer, until one does or `stop` passes.
  absl::StatusOr<MatchedGroup> Follow(const std::string& key,
                                      const internal::Declaration& self,
                                      const MatchmakingOptions& options, absl::Time stop,
                                      bool any_order);
  absl::StatusOr<internal::JoinResponse> AskToJoin(const std::string& key,
                                                   const internal::Declaration& self,
                                                   const internal::Declaration& leader);
  // Keeps one DHT listener on `key` across searches (a new OpenDHT listen per round
  // cost ~15 KB a round that OpenDHT kept); moves it when the key changes.
  void ListenTo(const std::string& key);

  Endpoint* endpoint_;
  Dht* dht_;
  std::shared_ptr<State> state_;
  std::string listened_key_;
  std::optional<uint64_t> listen_token_;
};

}  // namespace hivemind

#endif  // HIVEMIND_AVERAGING_MATCHMAKING_H_
