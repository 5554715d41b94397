// OpenDHT nodes on 127.0.0.1: a bootstrap node and peers that join through it.
#include "hivemind/dht/opendht_node.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

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
