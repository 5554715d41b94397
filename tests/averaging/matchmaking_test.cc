// Matchmaking over a real OpenDHT and real endpoints on 127.0.0.1.
#include "hivemind/averaging/matchmaking.h"

#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "averaging/matchmaking_messages.h"
#include "gtest/gtest.h"
#include "hivemind/dht/opendht_node.h"

namespace hivemind {
namespace {

TEST(MatchmakingMessages, RoundTripAndRejectGarbage) {
  internal::Declaration d{
      {"peer-a", "tcp://127.0.0.1:1", 12.5, MemberMode::kNode, 9, "payload"},
      77,
      absl::FromUnixSeconds(1700000000),
      "epoch-12"};
  auto parsed = internal::ParseDeclaration(internal::EncodeDeclaration(d));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->member.peer_id, "peer-a");
  EXPECT_EQ(parsed->member.bandwidth, 12.5);
  EXPECT_EQ(parsed->member.reference_hash, 9u);
  EXPECT_EQ(parsed->member.user_data, "payload");
  EXPECT_EQ(parsed->schema_hash, 77u);
  EXPECT_EQ(parsed->deadline, d.deadline);
  EXPECT_EQ(parsed->round, "epoch-12");

  internal::JoinResponse yes;
  yes.accepted = true;
  yes.group.group_id = "gid";
  yes.group.members = {d.member, d.member};
  yes.your_index = 1;
  const std::string body = internal::EncodeJoinResponse(yes);
  auto response = internal::ParseJoinResponse(body);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_TRUE(response->accepted);
  EXPECT_EQ(response->group.members.size(), 2u);
  EXPECT_EQ(response->your_index, 1u);
  for (size_t len = 0; len < body.size(); ++len) {
    EXPECT_EQ(internal::ParseJoinResponse(body.substr(0, len)).status().code(),
              absl::StatusCode::kDataLoss);
  }
  std::string bad_index = body;
  bad_index[bad_index.size() - 4] = 5;
  EXPECT_EQ(internal::ParseJoinResponse(bad_index).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(MatchmakingMessages, RefusalsCarryTheLeaderARefusingPeerFollows) {
  internal::Declaration leader{
      {"peer-l", "tcp://127.0.0.1:2", 0.0, MemberMode::kNode, 0, ""},
      5,
      absl::FromUnixSeconds(1700000001),
      ""};
  internal::JoinResponse no;
  no.reason = "following another leader";
  no.redirect = leader;
  const std::string body = internal::EncodeJoinResponse(no);
  auto parsed = internal::ParseJoinResponse(body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(parsed->accepted);
  EXPECT_EQ(parsed->reason, no.reason);
  ASSERT_TRUE(parsed->redirect.has_value());
  EXPECT_EQ(parsed->redirect->member.peer_id, "peer-l");
  EXPECT_EQ(parsed->redirect->member.address, "tcp://127.0.0.1:2");
  EXPECT_EQ(parsed->redirect->deadline, leader.deadline);

  no.redirect.reset();
  auto plain = internal::ParseJoinResponse(internal::EncodeJoinResponse(no));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->redirect.has_value());

  for (size_t len = 0; len < body.size(); ++len) {
    EXPECT_EQ(internal::ParseJoinResponse(body.substr(0, len)).status().code(),
              absl::StatusCode::kDataLoss);
  }
  std::string bad_flag = internal::EncodeJoinResponse(no);
  bad_flag.back() = 2;
  EXPECT_EQ(internal::ParseJoinResponse(bad_flag).status().code(),
            absl::StatusCode::kDataLoss);
}

struct Peer {
  std::unique_ptr<OpenDhtNode> dht;
  std::unique_ptr<Endpoint> endpoint;
  std::unique_ptr<Matchmaker> matchmaker;
};

class MatchmakingSwarm : public ::testing::Test {
 protected:
  void SetUp() override {
    DhtOptions options;
    options.run_id = "mm";
    auto bootstrap = OpenDhtNode::Create(options);
    ASSERT_TRUE(bootstrap.ok());
    bootstrap_ = std::move(bootstrap).value();
  }

  Peer& AddPeer() {
    Peer peer;
    DhtOptions options;
    options.run_id = "mm";
    options.initial_peers = {bootstrap_->address()};
    peer.dht = std::move(OpenDhtNode::Create(options)).value();
    peer.endpoint = std::move(Endpoint::Create({})).value();
    peer.matchmaker = std::make_unique<Matchmaker>(peer.endpoint.get(), peer.dht.get());
    peers_.push_back(std::move(peer));
    return peers_.back();
  }

  MatchmakingOptions OptionsFor(Peer& peer, int target, absl::Duration time) {
    MatchmakingOptions o;
    o.prefix = "run.grads";
    o.target_group_size = target;
    o.min_group_size = 2;
    o.matchmaking_time = time;
    o.self.peer_id = peer.endpoint->id();
    o.self.address = peer.endpoint->address();
    return o;
  }

  // OptionsFor every peer, in order.
  std::vector<MatchmakingOptions> OptionsForAll(int target, absl::Duration time) {
    std::vector<MatchmakingOptions> out;
    for (Peer& peer : peers_) out.push_back(OptionsFor(peer, target, time));
    return out;
  }

  // Runs FindGroup on peer i with options[i], each in its thread: all at once, or
  // `stagger` apart in order (so that they lead in that order).
  std::vector<absl::StatusOr<MatchedGroup>> FindAll(
      const std::vector<MatchmakingOptions>& options,
      absl::Duration stagger = absl::ZeroDuration()) {
    std::vector<absl::StatusOr<MatchedGroup>> out(options.size(),
                                                  absl::UnknownError("not run"));
    std::vector<std::thread> threads;
    for (size_t i = 0; i < options.size(); ++i) {
      threads.emplace_back(
          [&, i] { out[i] = peers_[i].matchmaker->FindGroup(options[i]); });
      absl::SleepFor(stagger);
    }
    for (auto& t : threads) t.join();
    return out;
  }

  // Gives `peer` a matchmaker over `dht`, a wrapper of its DHT kept for the test's
  // lifetime. (wrappers_ is declared before peers_: the matchmakers that use a
  // wrapper go first.)
  void UseDht(Peer& peer, std::unique_ptr<Dht> dht) {
    Dht* view = dht.get();
    wrappers_.push_back(std::move(dht));
    peer.matchmaker.reset();  // one kJoinRequest handler per endpoint: replace, not add
    peer.matchmaker = std::make_unique<Matchmaker>(peer.endpoint.get(), view);
  }

  std::unique_ptr<OpenDhtNode> bootstrap_;
  std::vector<std::unique_ptr<Dht>> wrappers_;
  std::vector<Peer> peers_;
};

// Every member of a group got the same GroupInfo, with its own index.
void ExpectConsistent(const std::vector<absl::StatusOr<MatchedGroup>>& results,
                      const std::vector<Peer>& peers) {
  std::map<std::string, const GroupInfo*> by_id;
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].ok()) continue;
    const MatchedGroup& m = *results[i];
    EXPECT_EQ(m.group.members[m.my_index].peer_id, peers[i].endpoint->id());
    auto [it, fresh] = by_id.emplace(m.group.group_id, &m.group);
    if (!fresh) {
      ASSERT_EQ(it->second->members.size(), m.group.members.size());
      for (size_t k = 0; k < m.group.members.size(); ++k) {
        EXPECT_EQ(it->second->members[k].peer_id, m.group.members[k].peer_id);
        EXPECT_EQ(it->second->members[k].address, m.group.members[k].address);
      }
    }
  }
}

TEST_F(MatchmakingSwarm, EightPeersFormGroupsOfAtMostFour) {
  std::vector<MatchmakingOptions> options;
  for (int i = 0; i < 8; ++i)
    options.push_back(OptionsFor(AddPeer(), 4, absl::Seconds(3)));
  const absl::Time start = absl::Now();
  auto results = FindAll(options);
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
  std::map<std::string, int> sizes;
  for (auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_LE(r->group.members.size(), 4u);
    EXPECT_GE(r->group.members.size(), 2u);
    sizes[r->group.group_id] = static_cast<int>(r->group.members.size());
  }
  int total = 0;
  for (auto& [id, size] : sizes) total += size;
  EXPECT_EQ(total, 8);  // the groups partition the peers
  ExpectConsistent(results, peers_);
}

TEST_F(MatchmakingSwarm, DifferentSchemasNeverMeet) {
  std::vector<MatchmakingOptions> options;
  for (int i = 0; i < 4; ++i) {
    options.push_back(OptionsFor(AddPeer(), 4, absl::Seconds(3)));
    options.back().schema_hash = i % 2;
  }
  auto results = FindAll(options);
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    for (const GroupMember& m : results[i]->group.members) {
      for (size_t j = 0; j < peers_.size(); ++j) {
        if (peers_[j].endpoint->id() == m.peer_id) {
          EXPECT_EQ(j % 2, i % 2);
        }
      }
    }
  }
  ExpectConsistent(results, peers_);
}

TEST_F(MatchmakingSwarm, PeersOfDifferentRoundsNeverMeetUnderOneKey) {
  std::vector<MatchmakingOptions> options;
  for (int i = 0; i < 4; ++i) {
    options.push_back(OptionsFor(AddPeer(), 4, absl::Seconds(3)));
    options.back().round = i % 2 == 0 ? "epoch-1" : "epoch-2";
  }
  auto results = FindAll(options);
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    EXPECT_EQ(results[i]->group.members.size(), 2u);
    for (const GroupMember& m : results[i]->group.members) {
      for (size_t j = 0; j < peers_.size(); ++j) {
        if (peers_[j].endpoint->id() == m.peer_id) {
          EXPECT_EQ(j % 2, i % 2);
        }
      }
    }
  }
  ExpectConsistent(results, peers_);
}

// Every peer ended in one group of `size`.
void ExpectOneGroupOf(const std::vector<absl::StatusOr<MatchedGroup>>& results,
                      size_t size) {
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->group.members.size(), size);
    EXPECT_EQ(r->group.group_id, results[0]->group.group_id);
  }
}

// A DHT as a slow or partitioned node sees it: one peer's records stay invisible to
// lookups and listeners until `reveal_at`; listeners then receive them.
class LateDht : public Dht {
 public:
  LateDht(Dht* inner, PeerId hidden, absl::Time reveal_at)
      : inner_(inner), hidden_(std::move(hidden)), reveal_at_(reveal_at) {
    revealer_ = std::thread([this] {
      absl::SleepFor(reveal_at_ - absl::Now());
      std::vector<std::pair<ListenCallback, DhtRecord>> held;
      {
        std::lock_guard<std::mutex> lock(mu_);
        held.swap(held_);
      }
      for (auto& [callback, record] : held) callback(record);
    });
  }
  ~LateDht() override { revealer_.join(); }

  const PeerId& id() const override { return inner_->id(); }
  absl::Status Store(absl::string_view key, absl::string_view subkey,
                     absl::string_view value, absl::Time expiration,
                     absl::Duration timeout, const KeyPair* signer) override {
    return inner_->Store(key, subkey, value, expiration, timeout, signer);
  }
  absl::StatusOr<std::vector<DhtRecord>> Get(absl::string_view key,
                                             absl::Duration timeout) override {
    auto records = inner_->Get(key, timeout);
    if (!records.ok() || absl::Now() >= reveal_at_) return records;
    std::vector<DhtRecord> visible;
    for (DhtRecord& r : *records) {
      if (r.subkey != hidden_) visible.push_back(std::move(r));
    }
    return visible;
  }
  absl::StatusOr<uint64_t> Listen(absl::string_view key,
                                  ListenCallback callback) override {
    return inner_->Listen(key, [this, callback](const DhtRecord& record) {
      std::lock_guard<std::mutex> lock(mu_);
      if (record.subkey == hidden_ && absl::Now() < reveal_at_) {
        held_.emplace_back(callback, record);
        return;
      }
      callback(record);
    });
  }
  void CancelListen(uint64_t token) override { inner_->CancelListen(token); }

 private:
  Dht* inner_;
  const PeerId hidden_;
  const absl::Time reveal_at_;
  std::mutex mu_;
  std::vector<std::pair<ListenCallback, DhtRecord>> held_;
  std::thread revealer_;
};

TEST_F(MatchmakingSwarm, ALeaderThatHearsOfABetterOneHandsItsJoinersOver) {
  // a declares first (so it leads first); b and c do not see a's declaration until
  // 1 s later. b leads and c joins b; when b hears of a, it hands c over and joins
  // a, so all three end in a's group instead of a alone and {b, c}.
  for (int i = 0; i < 3; ++i) AddPeer();
  Peer& a = peers_[0];  // (AddPeer may move earlier peers)
  Peer& b = peers_[1];
  Peer& c = peers_[2];
  const absl::Time reveal = absl::Now() + absl::Seconds(1);
  UseDht(b, std::make_unique<LateDht>(b.dht.get(), a.endpoint->id(), reveal));
  UseDht(c, std::make_unique<LateDht>(c.dht.get(), a.endpoint->id(), reveal));
  auto results =
      FindAll(OptionsForAll(3, absl::Seconds(4)), absl::Milliseconds(150));  // a, b, c
  ExpectOneGroupOf(results, 3);
  ExpectConsistent(results, peers_);
}

TEST_F(MatchmakingSwarm, APeerThatCannotSeeTheLeaderIsPointedToItByAFollower) {
  // a declares first and leads; b joins a. c never sees a's declaration (not by
  // lookups, not by its listener) during the round. Asking b, c is refused - b waits
  // on a - but told of a, asks a, and all three form one group. (Without the hint,
  // c leads alone and a assembles with b only at its deadline.)
  for (int i = 0; i < 3; ++i) AddPeer();
  Peer& a = peers_[0];
  Peer& c = peers_[2];
  UseDht(c, std::make_unique<LateDht>(c.dht.get(), a.endpoint->id(),
                                      absl::Now() + absl::Seconds(5)));
  const absl::Time start = absl::Now();
  auto results =
      FindAll(OptionsForAll(3, absl::Seconds(4)), absl::Milliseconds(150));  // a, b, c
  ExpectOneGroupOf(results, 3);
  // A full group assembles at once, well before a's 4 s deadline.
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  ExpectConsistent(results, peers_);
}

TEST_F(MatchmakingSwarm, ALonePeerGivesUpAtItsDeadline) {
  MatchmakingOptions options = OptionsFor(AddPeer(), 4, absl::Seconds(1));
  const absl::Time start = absl::Now();
  auto result = peers_[0].matchmaker->FindGroup(options);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
}

TEST_F(MatchmakingSwarm, ADeadLeaderDoesNotStallTheOthers) {
  // Peer 0 declares with the earliest deadline (everyone's first candidate), then its
  // endpoint dies. The others must still form a group by their deadline.
  std::vector<MatchmakingOptions> options;
  for (int i = 0; i < 4; ++i)
    options.push_back(OptionsFor(AddPeer(), 4, absl::Seconds(4)));
  options[0].matchmaking_time = absl::Seconds(2);
  std::thread victim([&] { (void)peers_[0].matchmaker->FindGroup(options[0]); });
  absl::SleepFor(absl::Milliseconds(150));  // declared, settling
  peers_[0].endpoint->Shutdown();
  const absl::Time start = absl::Now();
  std::vector<absl::StatusOr<MatchedGroup>> results(4, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 1; i < 4; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = peers_[i].matchmaker->FindGroup(options[i]); });
  }
  for (auto& t : threads) t.join();
  victim.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(7));
  for (int i = 1; i < 4; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    for (const GroupMember& m : results[i]->group.members) {
      EXPECT_NE(m.peer_id, peers_[0].endpoint->id());
    }
  }
  results[0] = absl::UnknownError("victim");
  ExpectConsistent(results, peers_);
}

// A peer that declares under another peer's id (its declaration is signed by its own
// endpoint's key, not by the peer it names) is ignored: a client, which can only
// join a leader it finds in the DHT, finds none and forms no group with it.
TEST_F(MatchmakingSwarm, AForgedDeclarationDoesNotGetAPeerIntoAGroup) {
  AddPeer();
  AddPeer();
  MatchmakingOptions leader = OptionsFor(peers_[0], 2, absl::Seconds(2));
  MatchmakingOptions client = OptionsFor(peers_[1], 2, absl::Seconds(2));
  client.self.mode = MemberMode::kClient;
  // Control: under its own id the same leader gets the client.
  auto genuine = FindAll({leader, client});
  ASSERT_TRUE(genuine[0].ok()) << genuine[0].status();
  ASSERT_TRUE(genuine[1].ok()) << genuine[1].status();

  auto victim = GenerateKeyPair();
  ASSERT_TRUE(victim.ok());
  leader.prefix = client.prefix = "run.forged";
  leader.self.peer_id = victim->public_key;
  auto forged = FindAll({leader, client});
  for (const auto& result : forged) {
    EXPECT_FALSE(result.ok()) << "a group formed with a forged declaration";
  }
}

TEST(Matchmaker, RejectsBadOptions) {
  DhtOptions dht_options;
  dht_options.run_id = "mm";
  auto dht = std::move(OpenDhtNode::Create(dht_options)).value();
  auto endpoint = std::move(Endpoint::Create({})).value();
  Matchmaker matchmaker(endpoint.get(), dht.get());
  MatchmakingOptions options;
  EXPECT_EQ(matchmaker.FindGroup(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.prefix = "p";
  options.self.peer_id = endpoint->id();
  options.self.address = endpoint->address();
  options.min_group_size = 5;
  options.target_group_size = 4;
  EXPECT_EQ(matchmaker.FindGroup(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hivemind
