// A mutex and condition variable over the standard library's, annotated for clang's
// thread-safety analysis (-Wthread-safety).
//
// Why not absl::Mutex: Debian's abseil is a shared library built without
// ThreadSanitizer, so TSan cannot see the ordering absl::Mutex provides and reports
// false races on everything it guards. pthread mutexes are intercepted by TSan.
#ifndef HIVEMIND_UTIL_MUTEX_H_
#define HIVEMIND_UTIL_MUTEX_H_

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace hivemind {
namespace internal {

class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

class CondVar {
 public:
  // Waits (with `mu` held) until `ready()` or `deadline`; returns ready().
  template <typename Predicate>
  bool WaitUntil(Mutex* mu, absl::Time deadline, Predicate ready)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    // Clamped: an infinite deadline would overflow the time point into the past.
    const absl::Duration wait = std::min(deadline - absl::Now(), absl::Hours(24 * 365));
    const auto until = std::chrono::system_clock::now() + absl::ToChronoNanoseconds(wait);
    const bool result = cv_.wait_until(lock, until, ready);
    lock.release();  // still held: the caller's MutexLock unlocks it
    return result;
  }

  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_UTIL_MUTEX_H_
