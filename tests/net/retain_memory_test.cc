#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"
#include "hivemind/net/endpoint.h"
#include "util/sanitizers.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace hivemind {
namespace {

#if defined(HIVEMIND_SANITIZER_ALLOCATOR) || !defined(__GLIBC__)
TEST(RetainFreedMemory, SaysSoWhenMallocIsNotGlibcs) {
  EXPECT_EQ(RetainFreedMemory().code(), absl::StatusCode::kUnimplemented);
}
#else
// By default glibc serves a 16 MiB block with its own mmap and unmaps it on free.
TEST(RetainFreedMemory, LargeBlocksComeFromTheHeapAndStayThereWhenFreed) {
  ASSERT_TRUE(RetainFreedMemory().ok());
  constexpr size_t kBlock = 16 << 20;
  const struct mallinfo2 before = mallinfo2();
  void* block = std::malloc(kBlock);
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBlock);
  const struct mallinfo2 during = mallinfo2();
  EXPECT_EQ(during.hblks, before.hblks) << "the block was mmapped on its own";
  std::free(block);
  const struct mallinfo2 after = mallinfo2();
  EXPECT_GE(after.fordblks, kBlock) << "freed memory went back to the kernel";
}
#endif

}  // namespace
}  // namespace hivemind
