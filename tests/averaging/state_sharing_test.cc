// State sharing between real endpoints on 127.0.0.1, over an in-memory DHT
// (state_process_test runs donors as processes over a real OpenDHT).
#include "hivemind/averaging/state_sharing.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "averaging/state_messages.h"
#include "gtest/gtest.h"
#include "hivemind/dht/memory_dht.h"
#include "hivemind/wire/buffer.h"
#include "tests/averaging/state_fixture.h"

namespace hivemind {
namespace {

using testing_state::BitIdentical;
using testing_state::MakeState;

TEST(StateBlob, RoundTripsBitExactly) {
  PeerState state = MakeState(1000, -42, 7);
  auto parsed = ParsePeerState(SerializePeerState(state));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(BitIdentical(state, *parsed));

  PeerState empty;
  auto parsed_empty = ParsePeerState(SerializePeerState(empty));
  ASSERT_TRUE(parsed_empty.ok()) << parsed_empty.status();
  EXPECT_TRUE(BitIdentical(empty, *parsed_empty));
}

TEST(StateBlob, CompressedBlobsRoundTripAndRejectBombsAndGarbage) {
  PeerState state = MakeState(20'000, 5, 3);
  std::fill(state.values.begin(), state.values.begin() + 15'000, 0.5f);  // compressible
  const std::string raw = SerializePeerState(state);
  const std::string packed = SerializePeerState(state, /*zstd_level=*/3);
  EXPECT_LT(packed.size(), raw.size() / 2);
  auto parsed = ParsePeerState(packed);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(BitIdentical(state, *parsed));
  for (size_t len = 0; len < packed.size(); len += 97) {
    EXPECT_EQ(ParsePeerState(packed.substr(0, len)).status().code(),
              absl::StatusCode::kDataLoss)
        << len;
  }
  std::string bomb = packed;  // claims to expand far beyond zstd's ratio
  for (int i = 0; i < 8; ++i) bomb[1 + i] = static_cast<char>(0x7f);
  EXPECT_EQ(ParsePeerState(bomb).status().code(), absl::StatusCode::kDataLoss);
  // (A flipped bit inside the zstd frame may still decode: integrity is the stripe
  // and state hashes' job, checked by the loader before it parses.)
}

TEST(StateBlob, RejectsTruncatedAndGarbageInput) {
  const std::string blob = SerializePeerState(MakeState(50, 3, 1));
  for (size_t len = 0; len < blob.size(); ++len) {
    EXPECT_EQ(ParsePeerState(blob.substr(0, len)).status().code(),
              absl::StatusCode::kDataLoss)
        << len;
  }
  EXPECT_EQ(ParsePeerState(blob + "x").status().code(), absl::StatusCode::kDataLoss);
  std::string other_version = blob;
  other_version[0] = 3;
  EXPECT_EQ(ParsePeerState(other_version).status().code(), absl::StatusCode::kDataLoss);
  // A value count far beyond the bytes present (it would overflow count * 4).
  wire::Writer w;
  w.PutU8(1);
  w.PutU64(0);
  w.PutBytes("");
  w.PutU64(~uint64_t{0} / 2);
  EXPECT_EQ(ParsePeerState(w.Release()).status().code(), absl::StatusCode::kDataLoss);
}

// The server hashes and serves stripes from the state's own memory: every range of
// the pieces and every hash must be those of the serialized blob.
TEST(StateBlob, PiecesAreTheSerializedBlobAndHashLikeIt) {
  for (const PeerState& state : {MakeState(1000, -42, 7), PeerState{}}) {
    const std::string blob = SerializePeerState(state);
    const internal::RawBlobPieces pieces(state);
    ASSERT_EQ(pieces.size(), blob.size());
    EXPECT_EQ(pieces.Copy(0, pieces.size()), blob);
    for (uint64_t begin = 0; begin < blob.size(); begin += 331) {
      const uint64_t n = std::min<uint64_t>(1000, blob.size() - begin);
      ASSERT_EQ(pieces.Copy(begin, n), blob.substr(begin, n)) << begin;
    }
    for (uint32_t stripe : {7u, 4096u, 1u << 20}) {
      std::vector<uint64_t> hashes;
      EXPECT_EQ(pieces.Hash(stripe, &hashes), internal::StateHash(blob));
      ASSERT_EQ(hashes.size(), internal::StripeCount(blob.size(), stripe)) << stripe;
      for (uint32_t i = 0; i < hashes.size(); ++i) {
        EXPECT_EQ(hashes[i], internal::StateHash(blob.substr(
                                 internal::StripeBegin(i, stripe),
                                 internal::StripeSize(blob.size(), stripe, i))))
            << "stripe " << i << " of " << stripe << " bytes";
      }
    }
  }
}

TEST(StateMessages, AdvertAndRequestRoundTripAndRejectGarbage) {
  internal::StateAdvert advert;
  advert.address = "tcp://127.0.0.1:5555";
  advert.epoch = 9;
  advert.state_bytes = 10000;
  advert.stripe_bytes = 4096;
  advert.state_hash = 77;
  advert.stripe_hashes = {1, 2, 3};
  const std::string value = internal::EncodeStateAdvert(advert);
  auto parsed = internal::ParseStateAdvert(value);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->SameLayout(advert));
  EXPECT_EQ(parsed->address, advert.address);
  EXPECT_EQ(parsed->epoch, 9);
  for (size_t len = 0; len < value.size(); ++len) {
    EXPECT_EQ(internal::ParseStateAdvert(value.substr(0, len)).status().code(),
              absl::StatusCode::kDataLoss);
  }
  advert.stripe_hashes.push_back(4);  // 4 stripes cannot hold 10000 bytes in 4 KiB
  EXPECT_EQ(
      internal::ParseStateAdvert(internal::EncodeStateAdvert(advert)).status().code(),
      absl::StatusCode::kDataLoss);

  const std::string request = internal::EncodeStateRequest({123, 4});
  auto r = internal::ParseStateRequest(request);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state_hash, 123u);
  EXPECT_EQ(r->stripe, 4u);
  EXPECT_FALSE(internal::ParseStateRequest(request + "x").ok());
  EXPECT_FALSE(internal::ParseStateRequest(request.substr(1)).ok());
}

TEST(StateMessages, StripesGrowSoTheAdvertFitsTheDht) {
  EXPECT_EQ(internal::ChooseStripeBytes(64u << 20, 1u << 20), 1u << 20);
  const uint64_t huge = uint64_t{20} << 30;  // 20 GiB in 1 MiB stripes: too many
  const uint64_t stripe = internal::ChooseStripeBytes(huge, 1u << 20);
  EXPECT_GT(stripe, 1u << 20);
  EXPECT_EQ(stripe % 4096, 0u);
  internal::StateAdvert advert;
  advert.address = std::string(internal::kMaxStateAddressSize, 'a');
  advert.state_bytes = huge;
  advert.stripe_bytes = static_cast<uint32_t>(stripe);
  advert.stripe_hashes.resize(internal::StripeCount(huge, advert.stripe_bytes));
  EXPECT_LE(advert.stripe_hashes.size(), internal::kMaxStripes);
  const std::string value = internal::EncodeStateAdvert(advert);
  EXPECT_LE(value.size(), kMaxDhtValueSize);
  EXPECT_TRUE(internal::ParseStateAdvert(value).ok());
}

struct Peer {
  std::unique_ptr<Dht> dht;
  std::unique_ptr<Endpoint> endpoint;
  std::unique_ptr<StateServer> server;
};

class StateSharing : public ::testing::Test {
 protected:
  Peer& AddPeer() {
    auto peer = std::make_unique<Peer>();
    peer->dht = swarm_.NewNode("state");
    peer->endpoint = std::move(Endpoint::Create({})).value();
    peers_.push_back(std::move(peer));
    return *peers_.back();
  }

  // A peer serving `state` in stripes of `stripe_bytes`.
  Peer& AddDonor(const PeerState& state, uint32_t stripe_bytes = 64u << 10,
                 absl::Duration serve_interval = absl::ZeroDuration(),
                 int zstd_level = 0) {
    Peer& peer = AddPeer();
    StateServerOptions options;
    options.prefix = "run";
    options.stripe_bytes = stripe_bytes;
    options.serve_interval = serve_interval;
    options.zstd_level = zstd_level;
    auto server = StateServer::Create(peer.endpoint.get(), peer.dht.get(), options);
    EXPECT_TRUE(server.ok()) << server.status();
    peer.server = std::move(server).value();
    const absl::Status published = peer.server->Publish(state);
    EXPECT_TRUE(published.ok()) << published;
    const absl::Status advertised = peer.server->WaitForAdvert(absl::Seconds(10));
    EXPECT_TRUE(advertised.ok()) << advertised;
    return peer;
  }

  static LoadStateOptions LoadOptions() {
    LoadStateOptions options;
    options.prefix = "run";
    options.timeout = absl::Seconds(20);
    options.stripe_timeout = absl::Seconds(5);
    return options;
  }

  MemoryDhtSwarm swarm_;  // declared first: destroyed after the peers
  std::vector<std::unique_ptr<Peer>> peers_;
};

TEST_F(StateSharing, LoadsTheExactStateFromOneDonor) {
  const PeerState state = MakeState(300'000, 12, 1);
  AddDonor(state);
  Peer& loader = AddPeer();
  LoadStateReport report;
  auto loaded =
      LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), LoadOptions(), &report);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(BitIdentical(state, *loaded));
  EXPECT_EQ(report.epoch, 12);
  EXPECT_EQ(report.candidates, 1);
  ASSERT_EQ(report.donors.size(), 1u);
  EXPECT_EQ(report.donors[0].stripes, report.stripes);
  EXPECT_EQ(report.stripes, internal::StripeCount(report.state_bytes, 64u << 10));
  EXPECT_EQ(report.stripes_retried, 0u);
}

TEST_F(StateSharing, LoadsACompressedStateExactly) {
  PeerState state = MakeState(300'000, 9, 2);
  std::fill(state.values.begin(), state.values.begin() + 200'000, 0.0f);
  AddDonor(state, 64u << 10, absl::ZeroDuration(), /*zstd_level=*/3);
  Peer& loader = AddPeer();
  LoadStateReport report;
  auto loaded =
      LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), LoadOptions(), &report);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(BitIdentical(state, *loaded));
  EXPECT_LT(report.state_bytes, 300'000u * sizeof(float) / 2);  // fewer bytes moved
}

TEST_F(StateSharing, SpreadsStripesOverThreeDonorsAndGetsTheExactState) {
  const PeerState state = MakeState(1'000'000, 5, 2);  // 4 MiB, 62 stripes
  for (int i = 0; i < 3; ++i) AddDonor(state, 64u << 10, absl::Milliseconds(5));
  Peer& loader = AddPeer();
  LoadStateReport report;
  auto loaded =
      LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), LoadOptions(), &report);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(BitIdentical(state, *loaded));
  ASSERT_EQ(report.donors.size(), 3u);
  uint64_t total = 0;
  for (const StateDonorReport& d : report.donors) {
    EXPECT_TRUE(d.status.ok()) << d.status;
    // Paced donors share the work: none is left idle.
    EXPECT_GE(d.stripes, report.stripes / 6) << d.address;
    total += d.stripes;
  }
  EXPECT_EQ(total, report.stripes);
}

TEST_F(StateSharing, FasterDonorsServeMoreStripes) {
  const PeerState state = MakeState(1'000'000, 5, 12);  // 62 stripes of 64 KiB
  Peer& slow = AddDonor(state, 64u << 10, absl::Milliseconds(100));
  AddDonor(state, 64u << 10, absl::Milliseconds(5));
  Peer& loader = AddPeer();
  LoadStateReport report;
  auto loaded =
      LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), LoadOptions(), &report);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(BitIdentical(state, *loaded));
  ASSERT_EQ(report.donors.size(), 2u);
  const StateDonorReport* slow_report = nullptr;
  for (const StateDonorReport& d : report.donors) {
    EXPECT_TRUE(d.status.ok()) << d.status;
    if (d.address == slow.endpoint->address()) slow_report = &d;
  }
  ASSERT_NE(slow_report, nullptr) << "the slow donor is missing from the report";
  // At 20x the pace, the fast donor leaves the slow one a handful of stripes.
  EXPECT_LE(slow_report->stripes, report.stripes / 4);
  EXPECT_GE(slow_report->stripes, 1u);
}

TEST_F(StateSharing, ChoosesTheMostAdvancedEpochAndItsLargestDonorSet) {
  const PeerState old_state = MakeState(10'000, 5, 3);
  const PeerState new_state = MakeState(10'000, 7, 4);
  const PeerState rival = MakeState(10'000, 7, 5);  // same epoch, fewer donors
  AddDonor(old_state, 4096);
  AddDonor(old_state, 4096);
  AddDonor(old_state, 4096);
  AddDonor(new_state, 4096);
  AddDonor(new_state, 4096);
  AddDonor(rival, 4096);
  Peer& loader = AddPeer();
  LoadStateReport report;
  auto loaded =
      LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), LoadOptions(), &report);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(BitIdentical(new_state, *loaded));
  EXPECT_EQ(report.candidates, 2);

  LoadStateOptions options = LoadOptions();
  options.min_epoch = 8;
  EXPECT_EQ(LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), options)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

// One peer advertising a newer epoch than everyone wins a load that trusts single
// donors; with min_agreeing_donors = 2 the state two donors agree on is loaded.
TEST_F(StateSharing, MinAgreeingDonorsPassesOverALoneNewerState) {
  const PeerState honest = MakeState(10'000, 5, 6);
  const PeerState lone = MakeState(10'000, 9, 7);
  AddDonor(honest, 4096);
  AddDonor(honest, 4096);
  AddDonor(lone, 4096);
  Peer& loader = AddPeer();
  auto trusting =
      LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), LoadOptions());
  ASSERT_TRUE(trusting.ok()) << trusting.status();
  EXPECT_TRUE(BitIdentical(lone, *trusting));

  LoadStateOptions options = LoadOptions();
  options.min_agreeing_donors = 2;
  LoadStateReport report;
  auto agreed =
      LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), options, &report);
  ASSERT_TRUE(agreed.ok()) << agreed.status();
  EXPECT_TRUE(BitIdentical(honest, *agreed));
  EXPECT_EQ(report.candidates, 2);

  options.min_agreeing_donors = 3;
  auto none = LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), options);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound) << none.status();
  EXPECT_TRUE(absl::StrContains(none.status().message(), "at most 2")) << none.status();

  options.min_agreeing_donors = 0;
  EXPECT_EQ(LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), options)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(StateSharing, NotFoundWithoutOtherDonors) {
  Peer& self = AddDonor(MakeState(1000, 1, 1), 4096);
  // Its own advert does not count.
  auto loaded = LoadStateFromPeers(self.endpoint.get(), self.dht.get(), LoadOptions());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound) << loaded.status();
}

// An advert in another peer's name (its subkey is not its signer) is ignored: here a
// copy of the donor's advert claiming a newer epoch, which would otherwise win and make
// the load fail when the blob's epoch does not match.
TEST_F(StateSharing, IgnoresAnAdvertForgedInAnotherPeersName) {
  const PeerState state = MakeState(1000, 5, 1);
  Peer& donor = AddDonor(state, 4096);
  Peer& attacker = AddPeer();
  auto adverts = attacker.dht->Get("run.state");
  ASSERT_TRUE(adverts.ok()) << adverts.status();
  ASSERT_EQ(adverts->size(), 1u);
  EXPECT_EQ((*adverts)[0].writer, donor.endpoint->id());  // signed by the endpoint
  auto advert = internal::ParseStateAdvert((*adverts)[0].value);
  ASSERT_TRUE(advert.ok()) << advert.status();
  advert->epoch = 6;
  ASSERT_TRUE(attacker.dht
                  ->Store("run.state", donor.endpoint->id(),
                          internal::EncodeStateAdvert(*advert),
                          absl::Now() + absl::Minutes(1))
                  .ok());
  Peer& loader = AddPeer();
  LoadStateReport report;
  auto loaded =
      LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), LoadOptions(), &report);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(BitIdentical(state, *loaded));
  EXPECT_EQ(report.epoch, 5);
  EXPECT_EQ(report.candidates, 1);
}

TEST_F(StateSharing, DropsADonorWhoseStateChangesMidDownload) {
  const PeerState state = MakeState(1'000'000, 3, 6);  // 62 stripes of 64 KiB
  Peer& changing = AddDonor(state, 64u << 10, absl::Milliseconds(15));
  AddDonor(state, 64u << 10, absl::Milliseconds(15));
  Peer& loader = AddPeer();
  LoadStateReport report;
  absl::StatusOr<PeerState> loaded = absl::UnknownError("not run");
  std::thread load([&] {
    loaded = LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), LoadOptions(),
                                &report);
  });
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (changing.server->stats().stripes_served < 4 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_TRUE(changing.server->Publish(MakeState(1000, 4, 7)).ok());
  load.join();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(BitIdentical(state, *loaded));
  ASSERT_EQ(report.donors.size(), 2u);
  int refused = 0;
  for (const StateDonorReport& d : report.donors) {
    if (d.address == changing.endpoint->address()) {
      EXPECT_EQ(d.status.code(), absl::StatusCode::kFailedPrecondition) << d.status;
      EXPECT_GE(d.stripes, 1u);
      ++refused;
    } else {
      EXPECT_TRUE(d.status.ok()) << d.status;
    }
  }
  EXPECT_EQ(refused, 1);
  EXPECT_GE(report.stripes_retried, 1u);
  EXPECT_GE(changing.server->stats().requests_refused, 1u);
}

// A withdrawn state is refused (so loaders go to other donors) and freed; the next
// Publish serves again.
TEST_F(StateSharing, AWithdrawnStateIsRefusedUntilTheNextPublish) {
  const PeerState state = MakeState(100'000, 5, 2);
  Peer& withdrawn = AddDonor(state);
  Peer& loader = AddPeer();
  withdrawn.server->Withdraw();
  EXPECT_EQ(withdrawn.server->stats().state_hash, 0u);  // nothing held
  LoadStateReport report;
  absl::StatusOr<PeerState> loaded =
      LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), LoadOptions(), &report);
  ASSERT_FALSE(loaded.ok());
  EXPECT_GE(withdrawn.server->stats().requests_refused, 1u);

  ASSERT_TRUE(withdrawn.server->Publish(MakeState(100'000, 6, 3)).ok());
  ASSERT_TRUE(withdrawn.server->WaitForAdvert().ok());
  loaded =
      LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), LoadOptions(), &report);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(BitIdentical(MakeState(100'000, 6, 3), *loaded));
}

// Replaces a donor's handler with one that serves its stripes with a bit flipped.
void Corrupt(Peer& donor, const PeerState& state, uint32_t stripe_bytes) {
  auto blob = std::make_shared<std::string>(SerializePeerState(state));
  donor.endpoint->SetHandler(
      wire::MessageType::kStateRequest,
      [blob, stripe_bytes](Message message, Responder responder) {
        auto request = internal::ParseStateRequest(message.body);
        ASSERT_TRUE(request.ok());
        std::string stripe = blob->substr(
            internal::StripeBegin(request->stripe, stripe_bytes),
            internal::StripeSize(blob->size(), stripe_bytes, request->stripe));
        stripe[stripe.size() / 2] ^= 0x10;
        responder.Reply(wire::MessageType::kStateChunk, MakeSharedBytes(stripe));
      });
}

TEST_F(StateSharing, DetectsACorruptedStripeAndFetchesItElsewhere) {
  const PeerState state = MakeState(200'000, 8, 8);  // 13 stripes of 64 KiB
  AddDonor(state);
  Peer& liar = AddDonor(state);
  Corrupt(liar, state, 64u << 10);
  Peer& loader = AddPeer();
  LoadStateReport report;
  auto loaded =
      LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), LoadOptions(), &report);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(BitIdentical(state, *loaded));
  ASSERT_EQ(report.donors.size(), 2u);
  for (const StateDonorReport& d : report.donors) {
    if (d.address == liar.endpoint->address()) {
      EXPECT_EQ(d.status.code(), absl::StatusCode::kDataLoss) << d.status;
      EXPECT_EQ(d.stripes, 0u);
    } else {
      EXPECT_EQ(d.stripes, report.stripes);
    }
  }
  EXPECT_GE(report.stripes_retried, 1u);
}

TEST_F(StateSharing, UnavailableWhenEveryDonorFails) {
  const PeerState state = MakeState(20'000, 1, 9);
  Peer& liar = AddDonor(state, 4096);
  Corrupt(liar, state, 4096);
  Peer& loader = AddPeer();
  auto loaded =
      LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), LoadOptions());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kUnavailable) << loaded.status();
  EXPECT_NE(loaded.status().message().find("does not match"), absl::string_view::npos)
      << loaded.status();
}

TEST_F(StateSharing, DeadlineExceededWhenDonorsAreTooSlow) {
  AddDonor(MakeState(100'000, 1, 10), 4096, absl::Seconds(1));
  Peer& loader = AddPeer();
  LoadStateOptions options = LoadOptions();
  options.timeout = absl::Milliseconds(1500);
  const absl::Time start = absl::Now();
  auto loaded = LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), options);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDeadlineExceeded)
      << loaded.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(StateSharing, RejectsBadOptions) {
  Peer& peer = AddPeer();
  StateServerOptions options;
  EXPECT_EQ(
      StateServer::Create(peer.endpoint.get(), peer.dht.get(), options).status().code(),
      absl::StatusCode::kInvalidArgument);
  options.prefix = "run";
  options.stripe_bytes = 100;
  EXPECT_FALSE(StateServer::Create(peer.endpoint.get(), peer.dht.get(), options).ok());
  options.stripe_bytes = 1u << 20;
  options.refresh_period = options.advert_ttl;
  EXPECT_FALSE(StateServer::Create(peer.endpoint.get(), peer.dht.get(), options).ok());

  EndpointOptions client;
  client.client_mode = true;
  auto client_endpoint = std::move(Endpoint::Create(client)).value();
  options.refresh_period = absl::Seconds(1);
  EXPECT_EQ(
      StateServer::Create(client_endpoint.get(), peer.dht.get(), options).status().code(),
      absl::StatusCode::kInvalidArgument);

  LoadStateOptions load;
  EXPECT_EQ(LoadStateFromPeers(peer.endpoint.get(), peer.dht.get(), load).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// The advert is stored by the server's thread: Publish (on the training thread)
// returns while a slow DHT is still storing, and a partitioned one only fails the
// store, which WaitForAdvert reports and Stats count.
TEST_F(StateSharing, PublishDoesNotWaitForTheDht) {
  Peer& donor = AddPeer();
  StateServerOptions options;
  options.prefix = "run";
  options.stripe_bytes = 4096;
  options.dht_timeout = absl::Seconds(1);
  auto server = StateServer::Create(donor.endpoint.get(), donor.dht.get(), options);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->WaitForAdvert(absl::ZeroDuration()).code(),
            absl::StatusCode::kFailedPrecondition);

  swarm_.SetLatency(absl::Milliseconds(800));
  const PeerState state = MakeState(10'000, 3, 12);
  const absl::Time start = absl::Now();
  ASSERT_TRUE((*server)->Publish(state).ok());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(400)) << "Publish waited for the DHT";
  EXPECT_EQ((*server)->WaitForAdvert(absl::Milliseconds(10)).code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE((*server)->WaitForAdvert(absl::Seconds(10)).ok());
  swarm_.SetLatency(absl::ZeroDuration());
  Peer& loader = AddPeer();
  auto loaded =
      LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), LoadOptions());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(BitIdentical(state, *loaded));

  swarm_.SetPartitioned(true);
  const absl::Time partitioned = absl::Now();
  ASSERT_TRUE((*server)->Publish(MakeState(10'000, 4, 13)).ok());
  EXPECT_LT(absl::Now() - partitioned, absl::Milliseconds(400));
  EXPECT_EQ((*server)->WaitForAdvert(absl::Seconds(10)).code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ((*server)->stats().advert_failures, 1u);
  EXPECT_EQ((*server)->stats().epoch, 4);  // served even though not advertised
}

TEST_F(StateSharing, RefreshesTheAdvertAndRefusesAfterShutdown) {
  Peer& donor = AddPeer();
  StateServerOptions options;
  options.prefix = "run";
  options.stripe_bytes = 4096;
  options.advert_ttl = absl::Seconds(2);
  options.refresh_period = absl::Milliseconds(500);
  auto server = StateServer::Create(donor.endpoint.get(), donor.dht.get(), options);
  ASSERT_TRUE(server.ok()) << server.status();
  const PeerState state = MakeState(10'000, 2, 11);
  ASSERT_TRUE((*server)->Publish(state).ok());
  // Past the first advert's expiration, the refreshed one is still found.
  absl::SleepFor(absl::Milliseconds(2500));
  Peer& loader = AddPeer();
  auto loaded =
      LoadStateFromPeers(loader.endpoint.get(), loader.dht.get(), LoadOptions());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(BitIdentical(state, *loaded));

  (*server)->Shutdown();
  (*server)->Shutdown();  // idempotent
  EXPECT_EQ((*server)->Publish(state).code(), absl::StatusCode::kCancelled);
  auto reply = loader.endpoint->Call(
      donor.endpoint->address(), wire::MessageType::kStateRequest,
      MakeSharedBytes(internal::EncodeStateRequest({1, 0})), absl::Seconds(2));
  EXPECT_FALSE(reply.ok());
}

}  // namespace
}  // namespace hivemind
