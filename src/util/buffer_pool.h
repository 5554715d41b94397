// Reusable message buffers. Large messages allocated fresh each time cost more than
// the data they carry: glibc serves them with mmap (or trims them back to the OS),
// so every buffer comes back as new pages that the kernel must zero and fault in.
// A pool keeps recently released buffers, already faulted in, for the next message.
#ifndef HIVEMIND_UTIL_BUFFER_POOL_H_
#define HIVEMIND_UTIL_BUFFER_POOL_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "hivemind/util/shared_bytes.h"
#include "util/mutex.h"

namespace hivemind {
namespace internal {

// Thread safety: thread-safe. Shared buffers may be released on any thread (ZeroMQ
// releases sent bodies on its own I/O thread).
class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  // Keeps at most `max_cached_bytes` of capacity in released buffers.
  static std::shared_ptr<BufferPool> Create(size_t max_cached_bytes);

  // A buffer of `size` bytes; contents unspecified (whatever it last held).
  std::unique_ptr<std::string> Take(size_t size);

  // Shares a filled buffer; it returns to the pool when the last reference goes.
  SharedBytes Share(std::unique_ptr<std::string> buffer);

  // Returns a buffer to the pool (or frees it when the pool is full).
  void Give(std::unique_ptr<std::string> buffer);

  // Capacity now held in released buffers (at most max_cached_bytes).
  size_t cached_bytes() const;

 private:
  explicit BufferPool(size_t max_cached_bytes) : max_cached_bytes_(max_cached_bytes) {}

  const size_t max_cached_bytes_;
  mutable Mutex mu_;
  std::vector<std::unique_ptr<std::string>> free_ ABSL_GUARDED_BY(mu_);
  size_t cached_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_UTIL_BUFFER_POOL_H_
