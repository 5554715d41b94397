#include "util/buffer_pool.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace hivemind {
namespace internal {
namespace {

TEST(BufferPool, AGivenBufferIsTakenAgainWithoutANewAllocation) {
  auto pool = BufferPool::Create(1 << 20);
  std::unique_ptr<std::string> buffer = pool->Take(1000);
  ASSERT_EQ(buffer->size(), 1000u);
  const char* data = buffer->data();
  pool->Give(std::move(buffer));
  EXPECT_GE(pool->cached_bytes(), 1000u);
  std::unique_ptr<std::string> again = pool->Take(800);  // smaller fits too
  EXPECT_EQ(again->data(), data);
  EXPECT_EQ(again->size(), 800u);
  EXPECT_EQ(pool->cached_bytes(), 0u);
}

TEST(BufferPool, ABufferTooSmallIsNotHandedOut) {
  auto pool = BufferPool::Create(1 << 20);
  std::unique_ptr<std::string> small = pool->Take(100);
  const size_t capacity = small->capacity();
  pool->Give(std::move(small));
  std::unique_ptr<std::string> big = pool->Take(capacity + 1000);
  EXPECT_EQ(big->size(), capacity + 1000);
  EXPECT_EQ(pool->cached_bytes(), capacity);  // the small one stays cached
}

TEST(BufferPool, ReleasedBuffersBeyondTheCapAreFreed) {
  auto pool = BufferPool::Create(3000);
  std::vector<std::unique_ptr<std::string>> taken;
  for (int i = 0; i < 4; ++i) taken.push_back(pool->Take(1000));
  for (auto& b : taken) pool->Give(std::move(b));
  EXPECT_LE(pool->cached_bytes(), 3000u);
  EXPECT_GE(pool->cached_bytes(), 1000u);
  pool->Give(nullptr);  // ignored
}

TEST(BufferPool, SharedBytesComeBackWhenTheLastReferenceGoes) {
  auto pool = BufferPool::Create(1 << 20);
  std::unique_ptr<std::string> buffer = pool->Take(4096);
  buffer->assign(4096, 'x');
  const char* data = buffer->data();
  SharedBytes shared = pool->Share(std::move(buffer));
  SharedBytes copy = shared;
  EXPECT_EQ(*copy, std::string(4096, 'x'));
  shared.reset();
  EXPECT_EQ(pool->cached_bytes(), 0u);  // still referenced
  copy.reset();
  EXPECT_GE(pool->cached_bytes(), 4096u);
  EXPECT_EQ(pool->Take(4096)->data(), data);
}

TEST(BufferPool, SharedBytesMayOutliveThePool) {
  auto pool = BufferPool::Create(1 << 20);
  SharedBytes shared = pool->Share(pool->Take(100));
  pool.reset();
  EXPECT_EQ(shared->size(), 100u);
  shared.reset();  // freed, not returned to the destroyed pool (ASan checks)
}

TEST(BufferPool, ThreadsTakeShareAndReleaseConcurrently) {
  auto pool = BufferPool::Create(64 << 10);
  std::vector<std::thread> threads;
  std::atomic<int> intact{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        std::unique_ptr<std::string> b = pool->Take(512 + 64 * (i % 8));
        std::fill(b->begin(), b->end(), static_cast<char>('a' + t));
        SharedBytes shared = pool->Share(std::move(b));
        if (std::all_of(shared->begin(), shared->end(),
                        [t](char c) { return c == static_cast<char>('a' + t); })) {
          ++intact;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(intact.load(), 4 * 500);  // no buffer was handed to two holders at once
  EXPECT_LE(pool->cached_bytes(), size_t{64 << 10});
}

}  // namespace
}  // namespace internal
}  // namespace hivemind
