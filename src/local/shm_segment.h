// A POSIX shared-memory segment mapped into this process, with the two primitives
// the CPU local reducer builds on: open-file-description byte locks (liveness: the
// kernel drops them when their holder dies) and futex waits on words in the segment.
#ifndef HIVEMIND_LOCAL_SHM_SEGMENT_H_
#define HIVEMIND_LOCAL_SHM_SEGMENT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace hivemind {
namespace internal {

// Thread safety: immutable after creation except for the byte locks, which belong to
// this object's open file description (not to a thread or the process).
class ShmSegment {
 public:
  // Creates segment `name` ("/..."), zero-filled, of `bytes` bytes, replacing any
  // segment of that name (a stale one from a crashed run). Reserves the memory up
  // front, so a full /dev/shm is a kResourceExhausted here, not a SIGBUS later.
  // kAlreadyExists when another process created it between the unlink and ours.
  static absl::StatusOr<std::unique_ptr<ShmSegment>> Create(const std::string& name,
                                                            size_t bytes);

  // Opens and maps an existing segment. kNotFound when there is none yet, or it is
  // still empty (its creator has not sized it yet): callers retry.
  static absl::StatusOr<std::unique_ptr<ShmSegment>> Open(const std::string& name);

  ~ShmSegment();  // unmaps and closes (which drops this object's byte locks)
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }

  // Takes the write lock on byte `byte` of the file. kAlreadyExists when another
  // open file description holds it.
  absl::Status LockByte(int byte);
  void UnlockByte(int byte);
  // Whether another open file description holds a lock on byte `byte`.
  bool ByteLockedByOther(int byte) const;

  // Removes the name (the mapping stays valid). Idempotent.
  void Unlink();

 private:
  ShmSegment(std::string name, int fd, void* data, size_t size)
      : name_(std::move(name)), fd_(fd), data_(data), size_(size) {}
  std::string name_;
  int fd_;
  void* data_;
  size_t size_;
  bool unlinked_ = false;
};

// Futex wait on a word of shared memory: returns when *word != expected, when woken,
// or after `timeout` (whichever is first; spurious returns are possible).
void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, absl::Duration timeout);
// Wakes every waiter on `word`.
void FutexWake(std::atomic<uint32_t>* word);

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_LOCAL_SHM_SEGMENT_H_
