#include "util/buffer_pool.h"

#include <utility>

namespace hivemind {
namespace internal {

std::shared_ptr<BufferPool> BufferPool::Create(size_t max_cached_bytes) {
  return std::shared_ptr<BufferPool>(new BufferPool(max_cached_bytes));
}

std::unique_ptr<std::string> BufferPool::Take(size_t size) {
  std::unique_ptr<std::string> buffer;
  {
    MutexLock lock(&mu_);
    // Most messages of a round have the same size: the last buffer usually fits.
    for (size_t i = free_.size(); i-- > 0;) {
      if (free_[i]->capacity() >= size) {
        buffer = std::move(free_[i]);
        free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
        cached_bytes_ -= buffer->capacity();
        break;
      }
    }
  }
  if (buffer == nullptr) buffer = std::make_unique<std::string>();
  // Growing within capacity writes only the bytes past the old size.
  buffer->resize(size);
  return buffer;
}

SharedBytes BufferPool::Share(std::unique_ptr<std::string> buffer) {
  std::weak_ptr<BufferPool> weak = weak_from_this();
  return SharedBytes(buffer.release(), [weak](const std::string* s) {
    std::unique_ptr<std::string> owned(const_cast<std::string*>(s));
    if (auto pool = weak.lock()) pool->Give(std::move(owned));
  });
}

void BufferPool::Give(std::unique_ptr<std::string> owned) {
  if (owned == nullptr) return;
  MutexLock lock(&mu_);
  if (cached_bytes_ + owned->capacity() > max_cached_bytes_) return;  // freed
  cached_bytes_ += owned->capacity();
  free_.push_back(std::move(owned));
}

size_t BufferPool::cached_bytes() const {
  MutexLock lock(&mu_);
  return cached_bytes_;
}

}  // namespace internal
}  // namespace hivemind
