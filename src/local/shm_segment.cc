#include "local/shm_segment.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hivemind {
namespace internal {
namespace {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
                  std::atomic<uint32_t>::is_always_lock_free,
              "futex words must be plain lock-free 32-bit atomics");

absl::Status Errno(const std::string& what, const std::string& name, int err) {
  return absl::InternalError(absl::StrCat(what, " ", name, ": ", std::strerror(err)));
}

struct flock ByteRange(short type, int byte) {
  struct flock range {};
  range.l_type = type;
  range.l_whence = SEEK_SET;
  range.l_start = byte;
  range.l_len = 1;
  range.l_pid = 0;  // required by F_OFD_*
  return range;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShmSegment>> ShmSegment::Create(const std::string& name,
                                                               size_t bytes) {
  shm_unlink(name.c_str());  // a stale segment of a crashed run, if any
  const int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrCat("shared memory ", name, " was created by another process"));
    }
    return Errno("shm_open", name, errno);
  }
  // posix_fallocate returns the error instead of setting errno.
  const int err = posix_fallocate(fd, 0, static_cast<off_t>(bytes));
  if (err != 0) {
    close(fd);
    shm_unlink(name.c_str());
    if (err == ENOSPC) {
      return absl::ResourceExhaustedError(
          absl::StrCat("shared memory ", name, ": no room for ", bytes,
                       " bytes in /dev/shm (enlarge it, e.g. docker --shm-size)"));
    }
    return Errno("posix_fallocate", name, err);
  }
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    const int mmap_err = errno;
    close(fd);
    shm_unlink(name.c_str());
    return Errno("mmap", name, mmap_err);
  }
  return std::unique_ptr<ShmSegment>(new ShmSegment(name, fd, data, bytes));
}

absl::StatusOr<std::unique_ptr<ShmSegment>> ShmSegment::Open(const std::string& name) {
  const int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no segment ", name));
    return Errno("shm_open", name, errno);
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return Errno("fstat", name, err);
  }
  if (st.st_size == 0) {
    close(fd);
    return absl::NotFoundError(absl::StrCat("segment ", name, " is not sized yet"));
  }
  const auto bytes = static_cast<size_t>(st.st_size);
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    const int err = errno;
    close(fd);
    return Errno("mmap", name, err);
  }
  return std::unique_ptr<ShmSegment>(new ShmSegment(name, fd, data, bytes));
}

ShmSegment::~ShmSegment() {
  munmap(data_, size_);
  close(fd_);
}

absl::Status ShmSegment::LockByte(int byte) {
  struct flock range = ByteRange(F_WRLCK, byte);
  if (fcntl(fd_, F_OFD_SETLK, &range) == 0) return absl::OkStatus();
  if (errno == EAGAIN || errno == EACCES) {
    return absl::AlreadyExistsError(
        absl::StrCat("byte ", byte, " of ", name_, " is locked by another member"));
  }
  return Errno("fcntl(F_OFD_SETLK)", name_, errno);
}

void ShmSegment::UnlockByte(int byte) {
  struct flock range = ByteRange(F_UNLCK, byte);
  fcntl(fd_, F_OFD_SETLK, &range);
}

bool ShmSegment::ByteLockedByOther(int byte) const {
  struct flock range = ByteRange(F_WRLCK, byte);
  if (fcntl(fd_, F_OFD_GETLK, &range) != 0) return false;
  return range.l_type != F_UNLCK;
}

void ShmSegment::Unlink() {
  if (unlinked_) return;
  unlinked_ = true;
  shm_unlink(name_.c_str());
}

void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration()) return;
  const timespec ts = absl::ToTimespec(timeout);
  // Not FUTEX_PRIVATE_FLAG: the word is shared between processes.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts,
          nullptr, 0);
}

void FutexWake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr,
          nullptr, 0);
}

}  // namespace internal
}  // namespace hivemind
