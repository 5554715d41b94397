// RetainFreedMemory (hivemind/net/endpoint.h): glibc malloc settings for a process
// that receives many large ZeroMQ messages.
#include "absl/status/status.h"
#include "hivemind/net/endpoint.h"
#include "util/sanitizers.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace hivemind {

absl::Status RetainFreedMemory() {
#if defined(HIVEMIND_SANITIZER_ALLOCATOR)
  return absl::UnimplementedError("a sanitizer's allocator replaces glibc's malloc");
#elif defined(__GLIBC__)
  // Setting either threshold also stops glibc from moving them on its own.
  // Free memory at the top of a heap is kept up to this much before it is trimmed.
  constexpr int kKeepFree = 512 << 20;
  if (mallopt(M_MMAP_THRESHOLD, kMaxRetainedBlock) != 1) {
    return absl::InternalError("glibc refused M_MMAP_THRESHOLD");
  }
  if (mallopt(M_TRIM_THRESHOLD, kKeepFree) != 1) {
    return absl::InternalError("glibc refused M_TRIM_THRESHOLD");
  }
  return absl::OkStatus();
#else
  return absl::UnimplementedError("malloc is not glibc's");
#endif
}

}  // namespace hivemind
