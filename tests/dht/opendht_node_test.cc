// OpenDHT nodes on 127.0.0.1: a bootstrap node and peers that join through it.
#include "hivemind/dht/opendht_node.h"

#include <opendht/dhtrunner.h>

#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dht/record.h"
#include "gtest/gtest.h"
#include "hivemind/wire/buffer.h"

namespace hivemind {
namespace {

std::unique_ptr<OpenDhtNode> Node(const std::string& run_id,
                                  std::vector<std::string> initial_peers = {}) {
  DhtOptions options;
  options.run_id = run_id;
  options.initial_peers = std::move(initial_peers);
  auto node = OpenDhtNode::Create(options);
  EXPECT_TRUE(node.ok()) << node.status();
  return node.ok() ? std::move(node).value() : nullptr;
}

class DhtSwarm : public ::testing::Test {
 protected:
  void SetUp() override {
    bootstrap_ = Node("run");
    ASSERT_NE(bootstrap_, nullptr);
    for (int i = 0; i < 3; ++i) {
      peers_.push_back(Node("run", {bootstrap_->address()}));
      ASSERT_NE(peers_.back(), nullptr);
    }
  }

  std::unique_ptr<OpenDhtNode> bootstrap_;
  std::vector<std::unique_ptr<OpenDhtNode>> peers_;
};

TEST_F(DhtSwarm, AStoredRecordIsVisibleFromEveryNode) {
  EXPECT_NE(bootstrap_->address().find("127.0.0.1:"), std::string::npos);
  ASSERT_TRUE(
      peers_[0]->Store("progress", "epoch", "7", absl::Now() + absl::Seconds(60)).ok());
  for (auto* node : {bootstrap_.get(), peers_[1].get(), peers_[2].get()}) {
    auto records = node->Get("progress");
    ASSERT_TRUE(records.ok()) << records.status();
    ASSERT_EQ(records->size(), 1u);
    EXPECT_EQ((*records)[0].value, "7");
    EXPECT_EQ((*records)[0].subkey, "epoch");
    EXPECT_EQ((*records)[0].writer, peers_[0]->id());
  }
}

TEST_F(DhtSwarm, NewestRecordPerWriterAndSubkeyWins) {
  const absl::Time expiration = absl::Now() + absl::Seconds(60);
  ASSERT_TRUE(peers_[0]->Store("key", "a", "old", expiration).ok());
  absl::SleepFor(absl::Milliseconds(5));
  ASSERT_TRUE(peers_[0]->Store("key", "a", "new", expiration).ok());
  ASSERT_TRUE(peers_[0]->Store("key", "b", "other", expiration).ok());
  ASSERT_TRUE(peers_[1]->Store("key", "a", "theirs", expiration).ok());
  auto records = peers_[2]->Get("key");
  ASSERT_TRUE(records.ok());
  std::map<std::pair<std::string, std::string>, std::string> seen;
  for (const DhtRecord& r : *records) seen[{r.writer, r.subkey}] = r.value;
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ((seen[{peers_[0]->id(), "a"}]), "new");
  EXPECT_EQ((seen[{peers_[0]->id(), "b"}]), "other");
  EXPECT_EQ((seen[{peers_[1]->id(), "a"}]), "theirs");
}

TEST_F(DhtSwarm, ExpiredRecordsAreIgnored) {
  ASSERT_TRUE(peers_[0]->Store("short", "s", "v", absl::Now() + absl::Seconds(1)).ok());
  auto before = peers_[1]->Get("short");
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->size(), 1u);
  absl::SleepFor(absl::Milliseconds(1200));
  auto after = peers_[1]->Get("short");
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty());
}

TEST_F(DhtSwarm, RunsDoNotSeeEachOthersRecords) {
  auto stranger = Node("another-run", {bootstrap_->address()});
  ASSERT_NE(stranger, nullptr);
  ASSERT_TRUE(
      peers_[0]->Store("shared-name", "s", "v", absl::Now() + absl::Seconds(60)).ok());
  auto records = stranger->Get("shared-name", absl::Seconds(3));
  ASSERT_TRUE(records.ok());
  EXPECT_TRUE(records->empty());
}

TEST_F(DhtSwarm, ListenersHearNewRecords) {
  std::atomic<int> heard{0};
  auto token = peers_[2]->Listen("announcements", [&](const DhtRecord& r) {
    if (r.value == "hello") ++heard;
  });
  ASSERT_TRUE(token.ok()) << token.status();
  ASSERT_TRUE(peers_[0]
                  ->Store("announcements", "s", "hello", absl::Now() + absl::Seconds(60))
                  .ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (heard == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_GE(heard.load(), 1);
  peers_[2]->CancelListen(*token);
}

TEST_F(DhtSwarm, SurvivesANodeLeaving) {
  ASSERT_TRUE(
      peers_[0]->Store("durable", "s", "v", absl::Now() + absl::Seconds(60)).ok());
  for (auto& node : peers_) ASSERT_EQ(node->Get("durable")->size(), 1u);  // replicated
  peers_[1].reset();  // leaves without a word; the others still list it for a while
  // Lookups that query the departed node wait for it to time out (about 10 s in
  // OpenDHT) before they complete; the record must still come back.
  for (auto* node : {bootstrap_.get(), peers_[2].get()}) {
    auto records = node->Get("durable", absl::Seconds(20));
    ASSERT_TRUE(records.ok());
    EXPECT_EQ(records->size(), 1u);
  }
  ASSERT_TRUE(peers_[2]->Store("after", "s", "w", absl::Now() + absl::Seconds(60)).ok());
  auto after = peers_[0]->Get("after", absl::Seconds(20));
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->size(), 1u);
}

// A plain OpenDHT node that joins the swarm and puts raw values, as an attacker
// could: OpenDHT stores whatever bytes anyone puts under any key.
class RawNode {
 public:
  explicit RawNode(const std::string& bootstrap) {
    dht::DhtRunner::Config config;
    config.threaded = true;
    runner_.run("127.0.0.1", "", "0", config);
    const size_t colon = bootstrap.rfind(':');
    runner_.bootstrap(bootstrap.substr(0, colon), bootstrap.substr(colon + 1));
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    unsigned good = 0, dubious = 0;
    while (good + dubious == 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
      runner_.getNodesStats(AF_INET, &good, &dubious, nullptr, nullptr);
    }
  }

  ~RawNode() {
    std::promise<void> done;
    runner_.shutdown([&done] { done.set_value(); }, /*stop=*/true);
    done.get_future().wait_for(std::chrono::seconds(1));
    runner_.join();
  }

  // Puts `data` under the OpenDHT key of `full_key` ("{run_id}/{key}") as a value of
  // `type`.
  bool Put(const std::string& full_key, const std::string& data,
           dht::ValueType::Id type = 0) {
    auto value = std::make_shared<dht::Value>(
        reinterpret_cast<const uint8_t*>(data.data()), data.size());
    value->type = type;
    auto promise = std::make_shared<std::promise<bool>>();
    std::future<bool> stored = promise->get_future();
    runner_.put(dht::InfoHash::get(full_key), value,
                [promise](bool ok) { promise->set_value(ok); });
    return stored.wait_for(std::chrono::seconds(10)) == std::future_status::ready &&
           stored.get();
  }

  // Every value under `full_key`, as each node that answered holds it.
  std::vector<std::shared_ptr<dht::Value>> GetValues(const std::string& full_key) {
    return runner_.get(dht::InfoHash::get(full_key)).get();
  }

  // The raw bytes of every value under `full_key`.
  std::vector<std::string> GetRaw(const std::string& full_key) {
    auto values = runner_.get(dht::InfoHash::get(full_key)).get();
    std::vector<std::string> out;
    for (const auto& v : values) out.emplace_back(v->data.begin(), v->data.end());
    return out;
  }

 private:
  dht::DhtRunner runner_;
};

KeyPair Keys() {
  auto keys = GenerateKeyPair();
  EXPECT_TRUE(keys.ok()) << keys.status();
  return keys.ok() ? *keys : KeyPair{};
}

// Forged records in `victim`'s name under `full_key`, each of them newer than
// anything the victim stored (so without verification they would win): signed by
// another key, with a garbage signature, and unsigned (version 1).
std::vector<std::string> ForgeriesOf(const PeerId& victim, const std::string& full_key) {
  const DhtRecord record{"s", "forged", victim, absl::Now() + absl::Minutes(1),
                         absl::Now() + absl::Minutes(2)};
  const KeyPair attacker = Keys();
  std::vector<std::string> out;
  const dht::InfoHash hash = dht::InfoHash::get(full_key);
  const std::string key_id(reinterpret_cast<const char*>(hash.data()), hash.size());
  out.push_back(internal::EncodeDhtRecord(
      {record, *Sign(attacker, internal::DhtRecordSigningMessage(key_id, record))}));
  out.push_back(internal::EncodeDhtRecord({record, std::string(kSignatureSize, 'x')}));
  wire::Writer v1;
  v1.PutU8(1);
  v1.PutBytes(record.subkey);
  v1.PutBytes(record.writer);
  v1.PutU64(static_cast<uint64_t>(absl::ToUnixMicros(record.stored_at)));
  v1.PutU64(static_cast<uint64_t>(absl::ToUnixMicros(record.expiration)));
  v1.PutBytes(record.value);
  out.push_back(v1.Release());
  return out;
}

TEST_F(DhtSwarm, ForgedRecordsAreIgnoredByGetAndListen) {
  RawNode attacker(bootstrap_->address());
  const PeerId& victim = peers_[0]->id();
  std::mutex mu;
  std::vector<std::string> heard;
  auto token = peers_[2]->Listen("ledger", [&](const DhtRecord& r) {
    std::lock_guard<std::mutex> lock(mu);
    heard.push_back(r.writer + "=" + r.value);
  });
  ASSERT_TRUE(token.ok()) << token.status();

  ASSERT_TRUE(
      peers_[0]->Store("ledger", "s", "genuine", absl::Now() + absl::Minutes(1)).ok());
  const std::vector<std::string> forgeries = ForgeriesOf(victim, "run/ledger");
  for (const std::string& forged : forgeries)
    ASSERT_TRUE(attacker.Put("run/ledger", forged));

  auto records = peers_[1]->Get("ledger");
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].value, "genuine");
  EXPECT_EQ((*records)[0].writer, victim);
  // The forgeries did arrive, and were dropped.
  EXPECT_GE(peers_[1]->rejected_records(), forgeries.size());

  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (peers_[2]->rejected_records() < forgeries.size() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GE(peers_[2]->rejected_records(), forgeries.size());
  peers_[2]->CancelListen(*token);
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_FALSE(heard.empty());
  for (const std::string& h : heard) EXPECT_EQ(h, victim + "=genuine");
}

TEST_F(DhtSwarm, ReplaceKeepsOneValuePerWriterAndSubkey) {
  const KeyPair endpoint = Keys();
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(
        peers_[0]
            ->Replace("ledger", "s", absl::StrCat("v", i), absl::Now() + absl::Minutes(1))
            .ok());
  }
  ASSERT_TRUE(peers_[0]
                  ->Replace("ledger", "t", "other subkey", absl::Now() + absl::Minutes(1))
                  .ok());
  ASSERT_TRUE(peers_[0]
                  ->Replace("ledger", "s", "endpoint's", absl::Now() + absl::Minutes(1),
                            absl::Seconds(10), &endpoint)
                  .ok());
  // The storing nodes took each replacement as an edit: one value per (writer,
  // subkey), holding the last record.
  RawNode reader(bootstrap_->address());
  std::map<dht::Value::Id, std::vector<uint8_t>> values;
  for (const auto& v : reader.GetValues("run/ledger")) values[v->id] = v->data;
  EXPECT_EQ(values.size(), 3u);
  auto records = peers_[1]->Get("ledger");
  ASSERT_TRUE(records.ok()) << records.status();
  std::map<std::string, std::string> latest;
  for (const DhtRecord& r : *records) latest[r.subkey + "@" + r.writer] = r.value;
  EXPECT_EQ(latest.size(), 3u);
  EXPECT_EQ(latest["s@" + peers_[0]->id()], "v9");
  EXPECT_EQ(latest["t@" + peers_[0]->id()], "other subkey");
  EXPECT_EQ(latest["s@" + endpoint.public_key], "endpoint's");
}

TEST_F(DhtSwarm, StoringNodesDropForgedRecordsOfTheRecordTypes) {
  std::vector<uint8_t> genuine;
  {
    RawNode attacker(bootstrap_->address());
    ASSERT_TRUE(
        peers_[0]->Store("ledger", "s", "genuine", absl::Now() + absl::Minutes(1)).ok());
    const auto values = attacker.GetValues("run/ledger");
    ASSERT_EQ(values.size(), 1u);
    genuine = values[0]->data;
    const dht::ValueType::Id record_type = values[0]->type;
    ASSERT_NE(record_type, 0);  // a lifetime type every OpenDhtNode registers
    for (const std::string& forged : ForgeriesOf(peers_[0]->id(), "run/ledger")) {
      attacker.Put("run/ledger", forged, record_type);
    }
  }  // the attacker leaves, and with it the copies it keeps itself
  // No storing node kept a forgery: readers get the genuine record only and have
  // nothing to drop.
  RawNode reader(bootstrap_->address());
  for (const auto& v : reader.GetValues("run/ledger")) EXPECT_EQ(v->data, genuine);
  const uint64_t rejected = peers_[1]->rejected_records();
  auto records = peers_[1]->Get("ledger", absl::Seconds(20));
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].value, "genuine");
  EXPECT_EQ(peers_[1]->rejected_records(), rejected);
}

TEST_F(DhtSwarm, ARecordReplayedUnderAnotherKeyIsRejected) {
  RawNode attacker(bootstrap_->address());
  ASSERT_TRUE(
      peers_[0]->Store("ledger-a", "s", "v", absl::Now() + absl::Minutes(1)).ok());
  const std::vector<std::string> genuine = attacker.GetRaw("run/ledger-a");
  ASSERT_EQ(genuine.size(), 1u);
  ASSERT_TRUE(attacker.Put("run/ledger-b", genuine[0]));

  const uint64_t rejected = peers_[1]->rejected_records();
  auto replayed = peers_[1]->Get("ledger-b");
  ASSERT_TRUE(replayed.ok()) << replayed.status();
  EXPECT_TRUE(replayed->empty());
  EXPECT_GT(peers_[1]->rejected_records(), rejected);  // it arrived and was dropped
  auto original = peers_[1]->Get("ledger-a");
  ASSERT_TRUE(original.ok()) << original.status();
  EXPECT_EQ(original->size(), 1u);
}

TEST_F(DhtSwarm, StoreSignsWithTheGivenKey) {
  const KeyPair endpoint_keys = Keys();
  ASSERT_TRUE(peers_[0]
                  ->Store("adverts", endpoint_keys.public_key, "v",
                          absl::Now() + absl::Minutes(1), absl::Seconds(10),
                          &endpoint_keys)
                  .ok());
  auto records = peers_[1]->Get("adverts");
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].writer, endpoint_keys.public_key);
  EXPECT_EQ((*records)[0].subkey, endpoint_keys.public_key);
  const KeyPair mismatched{endpoint_keys.public_key, Keys().secret_key};
  EXPECT_EQ(peers_[0]
                ->Store("adverts", "s", "v", absl::Now() + absl::Minutes(1),
                        absl::Seconds(10), &mismatched)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(OpenDhtNode, UsesTheGivenIdentity) {
  const KeyPair keys = Keys();
  DhtOptions options;
  options.run_id = "r";
  options.identity = keys;
  auto node = OpenDhtNode::Create(options);
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ((*node)->id(), keys.public_key);
  options.identity.public_key.clear();  // derived from the secret key
  node = OpenDhtNode::Create(options);
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ((*node)->id(), keys.public_key);
  options.identity.public_key = Keys().public_key;  // not this secret key's
  EXPECT_EQ(OpenDhtNode::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.identity = {"", "not a key"};
  EXPECT_EQ(OpenDhtNode::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(OpenDhtNode, RejectsBadArguments) {
  DhtOptions options;
  EXPECT_EQ(OpenDhtNode::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);  // no run id
  options.run_id = "r";
  options.listen_address = "no-port";
  EXPECT_EQ(OpenDhtNode::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto node = Node("r");
  ASSERT_NE(node, nullptr);
  EXPECT_EQ(node->Store("k", "s", std::string(kMaxDhtValueSize + 1, 'x'),
                        absl::Now() + absl::Seconds(5))
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(node->Store("k", "s", "v", absl::Now() - absl::Seconds(1)).code(),
            absl::StatusCode::kInvalidArgument);
  node->Shutdown();
  EXPECT_EQ(node->Get("k").status().code(), absl::StatusCode::kCancelled);
}

TEST(OpenDhtNode, UnreachableInitialPeerIsUnavailable) {
  DhtOptions options;
  options.run_id = "r";
  options.initial_peers = {"127.0.0.1:9"};  // discard port: nobody answers
  options.bootstrap_timeout = absl::Milliseconds(500);
  const absl::Time start = absl::Now();
  EXPECT_EQ(OpenDhtNode::Create(options).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

}  // namespace
}  // namespace hivemind

namespace hivemind {
namespace {

// A node that stores under a key while it looks the key up (a state server's advert
// thread beside the same peer's state loader) still sees the others' records.
TEST_F(DhtSwarm, GetDuringOwnStoreOfTheKeySeesTheOthers) {
  const absl::Time expiration = absl::Now() + absl::Seconds(60);
  ASSERT_TRUE(peers_[0]->Store("state", "advert", "a", expiration).ok());
  ASSERT_TRUE(peers_[1]->Store("state", "advert", "b", expiration).ok());
  auto before = peers_[2]->Get("state");
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(before->size(), 2u);
  for (int i = 0; i < 5; ++i) {
    std::thread store([&] {
      EXPECT_TRUE(peers_[2]
                      ->Store("state", "advert", absl::StrCat("c", i),
                              absl::Now() + absl::Seconds(60))
                      .ok());
    });
    absl::SleepFor(absl::Milliseconds(i));
    auto records = peers_[2]->Get("state");
    store.join();
    ASSERT_TRUE(records.ok()) << records.status();
    int others = 0;
    for (const DhtRecord& r : *records) others += r.writer != peers_[2]->id();
    EXPECT_EQ(others, 2) << "lookup " << i << " saw " << records->size() << " records";
  }
}

}  // namespace
}  // namespace hivemind

namespace hivemind {
namespace {

// A lookup right after an empty one still asks the nodes: a record stored (and
// confirmed) in between is found.
TEST_F(DhtSwarm, GetAfterAnEmptyGetSeesANewRecord) {
  for (int i = 0; i < 3; ++i) {
    const std::string key = absl::StrCat("fresh", i);
    auto empty = peers_[2]->Get(key);
    ASSERT_TRUE(empty.ok()) << empty.status();
    EXPECT_TRUE(empty->empty());
    ASSERT_TRUE(peers_[0]->Store(key, "s", "v", absl::Now() + absl::Seconds(60)).ok());
    auto records = peers_[2]->Get(key);
    ASSERT_TRUE(records.ok()) << records.status();
    EXPECT_EQ(records->size(), 1u) << "lookup " << i;
  }
}

}  // namespace
}  // namespace hivemind
