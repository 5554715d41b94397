// MemoryDhtSwarm: the Dht contract without a network, and its injected faults.
#include "hivemind/dht/memory_dht.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "util/mutex.h"

namespace hivemind {
namespace {

absl::Time InAMinute() { return absl::Now() + absl::Seconds(60); }

TEST(MemoryDht, ARecordIsVisibleFromEveryNodeOfTheRunOnly) {
  MemoryDhtSwarm swarm;
  auto a = swarm.NewNode("run");
  auto b = swarm.NewNode("run");
  auto other = swarm.NewNode("other");
  EXPECT_NE(a->id(), b->id());
  ASSERT_TRUE(a->Store("key", "sub", "v1", InAMinute()).ok());
  for (Dht* node : {a.get(), b.get()}) {
    auto records = node->Get("key");
    ASSERT_TRUE(records.ok()) << records.status();
    ASSERT_EQ(records->size(), 1u);
    EXPECT_EQ((*records)[0].value, "v1");
    EXPECT_EQ((*records)[0].subkey, "sub");
    EXPECT_EQ((*records)[0].writer, a->id());
  }
  auto elsewhere = other->Get("key");
  ASSERT_TRUE(elsewhere.ok());
  EXPECT_TRUE(elsewhere->empty());
  EXPECT_EQ(swarm.stores(), 1u);
}

TEST(MemoryDht, KeepsTheNewestRecordPerWriterAndSubkey) {
  MemoryDhtSwarm swarm;
  auto a = swarm.NewNode();
  auto b = swarm.NewNode();
  ASSERT_TRUE(a->Store("key", "x", "old", InAMinute()).ok());
  ASSERT_TRUE(a->Replace("key", "x", "new", InAMinute()).ok());
  ASSERT_TRUE(a->Store("key", "y", "other subkey", InAMinute()).ok());
  ASSERT_TRUE(b->Store("key", "x", "other writer", InAMinute()).ok());
  auto records = a->Get("key");
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 3u);
  int newest = 0;
  for (const DhtRecord& r : *records) {
    EXPECT_NE(r.value, "old");
    if (r.writer == a->id() && r.subkey == "x") newest += r.value == "new";
  }
  EXPECT_EQ(newest, 1);
}

TEST(MemoryDht, SignsWithTheGivenIdentityAndRejectsBadInput) {
  MemoryDhtSwarm swarm;
  auto node = swarm.NewNode();
  auto signer = GenerateKeyPair();
  ASSERT_TRUE(signer.ok());
  ASSERT_TRUE(node->Store("key", "s", "v", InAMinute(), absl::Seconds(1), &*signer).ok());
  auto records = node->Get("key");
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].writer, signer->public_key);

  KeyPair forged = *signer;
  forged.public_key = node->id();  // not the secret key's
  EXPECT_EQ(node->Store("key", "s", "v", InAMinute(), absl::Seconds(1), &forged).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      node->Store("key", "s", std::string(kMaxDhtValueSize + 1, 'x'), InAMinute()).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(node->Store("key", "s", "v", absl::Now() - absl::Seconds(1)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MemoryDht, ExpiredRecordsAreNotReturned) {
  MemoryDhtSwarm swarm;
  auto node = swarm.NewNode();
  ASSERT_TRUE(node->Store("key", "s", "v", absl::Now() + absl::Milliseconds(50)).ok());
  absl::SleepFor(absl::Milliseconds(100));
  auto records = node->Get("key");
  ASSERT_TRUE(records.ok());
  EXPECT_TRUE(records->empty());
}

TEST(MemoryDht, ListenersHearOldAndNewRecordsUntilCancelled) {
  MemoryDhtSwarm swarm;
  auto a = swarm.NewNode("run");
  auto b = swarm.NewNode("run");
  ASSERT_TRUE(a->Store("key", "first", "1", InAMinute()).ok());
  internal::Mutex mu;
  internal::CondVar cv;
  std::vector<std::string> heard;
  auto token = b->Listen("key", [&](const DhtRecord& record) {
    internal::MutexLock lock(&mu);
    heard.push_back(record.value);
    cv.SignalAll();
  });
  ASSERT_TRUE(token.ok());
  ASSERT_TRUE(a->Store("key", "second", "2", InAMinute()).ok());
  ASSERT_TRUE(a->Store("elsewhere", "x", "3", InAMinute()).ok());
  {
    internal::MutexLock lock(&mu);
    ASSERT_TRUE(cv.WaitUntil(&mu, absl::Now() + absl::Seconds(10),
                             [&] { return heard.size() >= 2; }));
    EXPECT_EQ(heard, (std::vector<std::string>{"1", "2"}));
  }
  b->CancelListen(*token);
  ASSERT_TRUE(a->Store("key", "third", "4", InAMinute()).ok());
  absl::SleepFor(absl::Milliseconds(100));
  internal::MutexLock lock(&mu);
  EXPECT_EQ(heard.size(), 2u);
}

TEST(MemoryDht, LatencyAndPartitionsDelayAndFailCalls) {
  MemoryDhtSwarm swarm;
  auto node = swarm.NewNode();
  swarm.SetLatency(absl::Milliseconds(200));
  absl::Time start = absl::Now();
  ASSERT_TRUE(node->Store("key", "s", "v", InAMinute(), absl::Seconds(5)).ok());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
  EXPECT_EQ(node->Get("key", absl::Milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);

  swarm.SetLatency(absl::ZeroDuration());
  swarm.SetPartitioned(true);
  EXPECT_EQ(node->Store("key", "s", "w", InAMinute(), absl::Milliseconds(50)).code(),
            absl::StatusCode::kDeadlineExceeded);
  swarm.SetPartitioned(false);
  auto records = node->Get("key");
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].value, "v");  // the partitioned store never landed
}

TEST(MemoryDht, ManyThreadsStoreAndReadAtOnce) {
  MemoryDhtSwarm swarm;
  std::vector<std::unique_ptr<Dht>> nodes;
  for (int i = 0; i < 4; ++i) nodes.push_back(swarm.NewNode("run"));
  std::atomic<int> heard{0};
  auto token = nodes[0]->Listen("key", [&](const DhtRecord&) { ++heard; });
  ASSERT_TRUE(token.ok());
  std::vector<std::thread> threads;
  for (auto& node : nodes) {
    threads.emplace_back([&node] {
      for (int i = 0; i < 50; ++i) {
        EXPECT_TRUE(node->Store("key", std::to_string(i % 5), "v", InAMinute()).ok());
        EXPECT_TRUE(node->Get("key").ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  auto records = nodes[1]->Get("key");
  ASSERT_TRUE(records.ok());
  EXPECT_EQ(records->size(), 4u * 5u);  // 4 writers x 5 subkeys
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (heard.load() < 200 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(heard.load(), 200);
}

}  // namespace
}  // namespace hivemind
