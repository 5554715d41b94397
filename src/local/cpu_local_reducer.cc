#include "hivemind/local/cpu_local_reducer.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "local/shm_segment.h"
#include "local/swarm_call.h"
#include "util/status_macros.h"

namespace hivemind {
namespace {

using internal::CallSwarmStep;
using internal::FutexWait;
using internal::FutexWake;
using internal::ShmSegment;

constexpr uint64_t kMagic = 0x6c61636f6c6d7668;  // "hvmlocal", little-endian
constexpr uint32_t kVersion = 1;
constexpr int kMaxWorldSize = 64;
constexpr size_t kMaxKeySize = 200;
constexpr size_t kMaxSegmentBytes = size_t{1} << 46;
constexpr size_t kMessageSize = 200;

// The segment starts with this header; every field but the atomics is written
// before the atomic that publishes it (release) and read after it (acquire).
struct alignas(64) SegmentHeader {
  std::atomic<uint64_t> magic{0};  // kMagic once the rest is initialized
  uint32_t version = 0;
  uint32_t world_size = 0;
  uint64_t capacity = 0;
  std::atomic<uint32_t> arrivals{0};      // futex: bumped when a worker fills its slot
  std::atomic<uint32_t> result_round{0};  // futex: the round whose result is out
  int32_t result_code = 0;                // absl::StatusCode of that round
  uint32_t result_has_values = 0;         // 1: the result area holds its values
  uint32_t result_fatal = 0;              // 1: the leader left the group
  char result_message[kMessageSize] = {};
};

// One per worker (rank >= 1), followed by `capacity` floats.
struct alignas(64) SlotHeader {
  std::atomic<uint32_t> round{0};  // the round whose values the slot holds
  uint32_t invalid = 0;            // 1: `message` says why the values are unusable
  float weight = 0.0f;
  uint64_t size = 0;
  char message[kMessageSize] = {};
};

size_t RoundUp64(size_t n) { return (n + 63) / 64 * 64; }

struct Layout {
  size_t result_offset = 0;  // `capacity` floats: the leader's result
  size_t slots_offset = 0;   // slot of rank r at slots_offset + (r - 1) * slot_stride
  size_t slot_stride = 0;
  size_t total = 0;
};

Layout ComputeLayout(int world_size, size_t capacity) {
  Layout layout;
  const size_t values = RoundUp64(capacity * sizeof(float));
  layout.result_offset = RoundUp64(sizeof(SegmentHeader));
  layout.slots_offset = layout.result_offset + values;
  layout.slot_stride = RoundUp64(sizeof(SlotHeader)) + values;
  layout.total =
      layout.slots_offset + static_cast<size_t>(world_size - 1) * layout.slot_stride;
  return layout;
}

void CopyMessage(char (&to)[kMessageSize], absl::string_view message) {
  const size_t n = std::min(message.size(), kMessageSize - 1);
  if (n > 0) std::memcpy(to, message.data(), n);  // an empty view may hold null
  to[n] = '\0';
}

bool AllFinite(const float* values, size_t n) {
  bool finite = true;
  for (size_t i = 0; i < n; ++i) finite &= std::isfinite(values[i]);
  return finite;
}

// Why this rank's input is unusable ("" when it is fine). Checks the weight and size
// only; the values are checked where they are copied.
std::string CheckWeightAndSize(float weight, size_t size, size_t capacity) {
  if (!(std::isfinite(weight) && weight >= 0.0f)) {
    return absl::StrCat("weight ", weight, " is not finite and >= 0");
  }
  if (size > capacity) {
    return absl::StrCat("passed ", size, " values, more than the capacity ", capacity);
  }
  return "";
}

absl::Status ValidateOptions(const CpuLocalReducerOptions& o) {
  if (o.key.empty() || o.key.size() > kMaxKeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("key must have 1 to ", kMaxKeySize, " characters"));
  }
  for (char c : o.key) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
          c == '-')) {
      return absl::InvalidArgumentError(
          absl::StrCat("key '", o.key, "' has a character other than [A-Za-z0-9._-]"));
    }
  }
  if (o.world_size < 1 || o.world_size > kMaxWorldSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("world_size ", o.world_size, " is not in [1, ", kMaxWorldSize, "]"));
  }
  if (o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", o.rank, " is not in [0, ", o.world_size, ")"));
  }
  if (o.capacity == 0 ||
      o.capacity > kMaxSegmentBytes / sizeof(float) / static_cast<size_t>(o.world_size)) {
    return absl::InvalidArgumentError(
        absl::StrCat("capacity ", o.capacity, " is 0 or too large"));
  }
  if (o.join_timeout <= absl::ZeroDuration() ||
      o.liveness_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "join_timeout and liveness_interval must be positive");
  }
  return absl::OkStatus();
}

}  // namespace

class CpuLocalReducer::Impl {
 public:
  Impl(CpuLocalReducerOptions options, std::unique_ptr<ShmSegment> segment)
      : options_(std::move(options)),
        segment_(std::move(segment)),
        layout_(ComputeLayout(options_.world_size, options_.capacity)) {}

  static absl::StatusOr<std::unique_ptr<Impl>> CreateLeader(
      const CpuLocalReducerOptions& options);
  static absl::StatusOr<std::unique_ptr<Impl>> JoinAsWorker(
      const CpuLocalReducerOptions& options);

  const CpuLocalReducerOptions& options() const { return options_; }

  absl::Status AllReduce(absl::Span<float> values, const LocalReduceOptions& options,
                         const SwarmStep& swarm_step) {
    if (!broken_.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the local group broke earlier: ", broken_.ToString()));
    }
    const uint32_t round = ++round_;
    const absl::Time deadline = absl::Now() + options.timeout;
    return options_.rank == 0 ? LeaderRound(values, options, swarm_step, round, deadline)
                              : WorkerRound(values, options, round, deadline);
  }

 private:
  SegmentHeader* header() const { return static_cast<SegmentHeader*>(segment_->data()); }
  char* base() const { return static_cast<char*>(segment_->data()); }
  float* result() const {
    return reinterpret_cast<float*>(base() + layout_.result_offset);
  }
  SlotHeader* slot(int rank) const {
    return reinterpret_cast<SlotHeader*>(base() + layout_.slots_offset +
                                         static_cast<size_t>(rank - 1) *
                                             layout_.slot_stride);
  }
  float* slot_values(int rank) const {
    return reinterpret_cast<float*>(reinterpret_cast<char*>(slot(rank)) +
                                    RoundUp64(sizeof(SlotHeader)));
  }

  // Leaves the group (the others see this rank's lock go) and fails every later call.
  absl::Status Break(absl::Status status) {
    if (broken_.ok()) {
      broken_ = status;
      segment_->UnlockByte(options_.rank);
    }
    return status;
  }

  void InitializeSegment();
  absl::Status WaitForWorkersToJoin();
  absl::Status WaitForDeposits(uint32_t round, absl::Time deadline);
  absl::Status WaitForResult(uint32_t round, absl::Time deadline);
  absl::Status CheckDeposits(absl::Span<const float> values,
                             const std::string& own_error);
  void Reduce(absl::Span<float> values, float weight);
  void Publish(uint32_t round, const absl::Status& status, bool has_values, bool fatal);
  absl::Status LeaderRound(absl::Span<float> values, const LocalReduceOptions& options,
                           const SwarmStep& swarm_step, uint32_t round,
                           absl::Time deadline);
  absl::Status WorkerRound(absl::Span<float> values, const LocalReduceOptions& options,
                           uint32_t round, absl::Time deadline);

  const CpuLocalReducerOptions options_;
  const std::unique_ptr<ShmSegment> segment_;
  const Layout layout_;
  uint32_t round_ = 0;
  absl::Status broken_;
};

// ---- Forming the group ----

void CpuLocalReducer::Impl::InitializeSegment() {
  auto* h = new (segment_->data()) SegmentHeader();
  h->version = kVersion;
  h->world_size = static_cast<uint32_t>(options_.world_size);
  h->capacity = options_.capacity;
  for (int r = 1; r < options_.world_size; ++r) new (slot(r)) SlotHeader();
}

absl::Status CpuLocalReducer::Impl::WaitForWorkersToJoin() {
  const absl::Time deadline = absl::Now() + options_.join_timeout;
  for (;;) {
    std::vector<int> missing;
    for (int r = 1; r < options_.world_size; ++r) {
      if (!segment_->ByteLockedByOther(r)) missing.push_back(r);
    }
    if (missing.empty()) return absl::OkStatus();
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "local group '", options_.key, "': rank(s) ", absl::StrJoin(missing, ", "),
          " did not join within ", absl::FormatDuration(options_.join_timeout)));
    }
    absl::SleepFor(options_.liveness_interval);
  }
}

absl::StatusOr<std::unique_ptr<CpuLocalReducer::Impl>>
CpuLocalReducer::Impl::CreateLeader(const CpuLocalReducerOptions& options) {
  const Layout layout = ComputeLayout(options.world_size, options.capacity);
  HIVEMIND_ASSIGN_OR_RETURN(
      std::unique_ptr<ShmSegment> segment,
      ShmSegment::Create("/hivemind-local-" + options.key, layout.total));
  auto impl = std::make_unique<Impl>(options, std::move(segment));
  impl->InitializeSegment();
  absl::Status status = impl->segment_->LockByte(0);
  if (status.ok()) {
    impl->header()->magic.store(kMagic, std::memory_order_release);
    status = impl->WaitForWorkersToJoin();
  }
  // Everyone who will open the name has opened it (or the group failed to form).
  impl->segment_->Unlink();
  if (!status.ok()) return status;
  return impl;
}

absl::StatusOr<std::unique_ptr<CpuLocalReducer::Impl>>
CpuLocalReducer::Impl::JoinAsWorker(const CpuLocalReducerOptions& options) {
  const std::string name = "/hivemind-local-" + options.key;
  const Layout layout = ComputeLayout(options.world_size, options.capacity);
  const absl::Time deadline = absl::Now() + options.join_timeout;
  for (;;) {
    absl::StatusOr<std::unique_ptr<ShmSegment>> segment = ShmSegment::Open(name);
    if (!segment.ok() && segment.status().code() != absl::StatusCode::kNotFound) {
      return segment.status();
    }
    if (segment.ok() && (*segment)->size() >= sizeof(SegmentHeader)) {
      const auto* h = static_cast<const SegmentHeader*>((*segment)->data());
      // Initialized by a leader that is alive (not a stale segment of a dead one).
      if (h->magic.load(std::memory_order_acquire) == kMagic &&
          (*segment)->ByteLockedByOther(0)) {
        if (h->version != kVersion ||
            h->world_size != static_cast<uint32_t>(options.world_size) ||
            h->capacity != options.capacity || (*segment)->size() < layout.total) {
          return absl::InvalidArgumentError(absl::StrCat(
              "local group '", options.key, "': the leader's segment has version ",
              h->version, ", world size ", h->world_size, ", capacity ", h->capacity,
              "; this worker expects ", kVersion, ", ", options.world_size, ", ",
              options.capacity));
        }
        HIVEMIND_RETURN_IF_ERROR((*segment)->LockByte(options.rank));
        return std::make_unique<Impl>(options, *std::move(segment));
      }
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("local group '", options.key, "': no live leader within ",
                       absl::FormatDuration(options.join_timeout)));
    }
    absl::SleepFor(options.liveness_interval);
  }
}

// ---- The leader's round ----

absl::Status CpuLocalReducer::Impl::WaitForDeposits(uint32_t round, absl::Time deadline) {
  for (;;) {
    const uint32_t seen = header()->arrivals.load(std::memory_order_acquire);
    int missing = 0;
    for (int r = 1; r < options_.world_size && missing == 0; ++r) {
      if (slot(r)->round.load(std::memory_order_acquire) != round) missing = r;
    }
    if (missing == 0) return absl::OkStatus();
    // Checked after the slot, so a worker that delivered and then left still counts.
    if (!segment_->ByteLockedByOther(missing) &&
        slot(missing)->round.load(std::memory_order_acquire) != round) {
      return absl::UnavailableError(
          absl::StrCat("local worker rank ", missing,
                       " died or left the group before delivering round ", round));
    }
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "local worker rank ", missing, " did not deliver round ", round, " in time"));
    }
    FutexWait(&header()->arrivals, seen,
              std::min(options_.liveness_interval, deadline - now));
  }
}

absl::Status CpuLocalReducer::Impl::CheckDeposits(absl::Span<const float> values,
                                                  const std::string& own_error) {
  if (!own_error.empty()) return absl::InvalidArgumentError("rank 0: " + own_error);
  for (int r = 1; r < options_.world_size; ++r) {
    const SlotHeader* s = slot(r);
    if (s->invalid != 0) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", r, ": ", s->message));
    }
    if (s->size != values.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rank ", r, " passed ", s->size, " values, the leader ", values.size()));
    }
  }
  return absl::OkStatus();
}

// result = sum_r(w_r x_r) / sum_r(w_r), in rank order (every weight 1 if all are 0).
void CpuLocalReducer::Impl::Reduce(absl::Span<float> values, float weight) {
  float* acc = result();
  const size_t n = values.size();
  if (options_.world_size == 1) {
    std::copy(values.begin(), values.end(), acc);
    return;
  }
  float total = weight;
  for (int r = 1; r < options_.world_size; ++r) total += slot(r)->weight;
  const bool unweighted = !(total > 0.0f);
  const float w0 = unweighted ? 1.0f : weight;
  for (size_t i = 0; i < n; ++i) acc[i] = w0 * values[i];
  for (int r = 1; r < options_.world_size; ++r) {
    const float w = unweighted ? 1.0f : slot(r)->weight;
    const float* x = slot_values(r);
    for (size_t i = 0; i < n; ++i) acc[i] += w * x[i];
  }
  const float divisor = unweighted ? static_cast<float>(options_.world_size) : total;
  for (size_t i = 0; i < n; ++i) acc[i] /= divisor;
}

void CpuLocalReducer::Impl::Publish(uint32_t round, const absl::Status& status,
                                    bool has_values, bool fatal) {
  SegmentHeader* h = header();
  h->result_code = static_cast<int32_t>(status.code());
  h->result_has_values = has_values ? 1 : 0;
  h->result_fatal = fatal ? 1 : 0;
  CopyMessage(h->result_message, status.message());
  h->result_round.store(round, std::memory_order_release);
  FutexWake(&h->result_round);
}

absl::Status CpuLocalReducer::Impl::LeaderRound(absl::Span<float> values,
                                                const LocalReduceOptions& options,
                                                const SwarmStep& swarm_step,
                                                uint32_t round, absl::Time deadline) {
  std::string own_error =
      CheckWeightAndSize(options.weight, values.size(), options_.capacity);
  if (own_error.empty() && !AllFinite(values.data(), values.size())) {
    own_error = "values hold NaN or Inf";
  }
  // Wait even when this rank's input is bad: the workers wait for this round's answer.
  absl::Status status = WaitForDeposits(round, deadline);
  if (!status.ok()) {
    Publish(round,
            absl::Status(status.code(), "leader: " + std::string(status.message())),
            /*has_values=*/false, /*fatal=*/true);
    return Break(status);
  }
  status = CheckDeposits(values, own_error);
  if (!status.ok()) {
    Publish(round, status, /*has_values=*/false, /*fatal=*/false);
    return status;
  }
  Reduce(values, options.weight);
  float total_weight = options.weight;
  for (int r = 1; r < options_.world_size; ++r) total_weight += slot(r)->weight;
  absl::Span<float> average(result(), values.size());
  if (swarm_step) status = CallSwarmStep(swarm_step, average, total_weight);
  std::copy(average.begin(), average.end(), values.begin());
  Publish(round, status, /*has_values=*/true, /*fatal=*/false);
  return status;
}

// ---- A worker's round ----

absl::Status CpuLocalReducer::Impl::WaitForResult(uint32_t round, absl::Time deadline) {
  SegmentHeader* h = header();
  for (;;) {
    const uint32_t seen = h->result_round.load(std::memory_order_acquire);
    if (seen == round) return absl::OkStatus();
    if (!segment_->ByteLockedByOther(0) &&
        h->result_round.load(std::memory_order_acquire) != round) {
      return absl::UnavailableError(absl::StrCat(
          "the local leader (rank 0) died or left the group during round ", round));
    }
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the local leader did not answer round ", round, " in time"));
    }
    FutexWait(&h->result_round, seen,
              std::min(options_.liveness_interval, deadline - now));
  }
}

absl::Status CpuLocalReducer::Impl::WorkerRound(absl::Span<float> values,
                                                const LocalReduceOptions& options,
                                                uint32_t round, absl::Time deadline) {
  SlotHeader* s = slot(options_.rank);
  std::string error =
      CheckWeightAndSize(options.weight, values.size(), options_.capacity);
  if (error.empty()) {
    std::copy(values.begin(), values.end(), slot_values(options_.rank));
    if (!AllFinite(slot_values(options_.rank), values.size()))
      error = "values hold NaN or Inf";
  }
  s->invalid = error.empty() ? 0 : 1;
  CopyMessage(s->message, error);
  s->weight = options.weight;
  s->size = values.size();
  s->round.store(round, std::memory_order_release);
  header()->arrivals.fetch_add(1, std::memory_order_release);
  FutexWake(&header()->arrivals);

  absl::Status status = WaitForResult(round, deadline);
  if (!status.ok()) return Break(status);
  const SegmentHeader* h = header();
  status = absl::Status(static_cast<absl::StatusCode>(h->result_code), h->result_message);
  if (h->result_has_values != 0) {
    std::copy(result(), result() + values.size(), values.begin());
  }
  if (h->result_fatal != 0) return Break(status);
  return status;
}

// ---- The public class ----

absl::StatusOr<std::unique_ptr<CpuLocalReducer>> CpuLocalReducer::Create(
    const CpuLocalReducerOptions& options) {
  HIVEMIND_RETURN_IF_ERROR(ValidateOptions(options));
  HIVEMIND_ASSIGN_OR_RETURN(
      std::unique_ptr<Impl> impl,
      options.rank == 0 ? Impl::CreateLeader(options) : Impl::JoinAsWorker(options));
  return std::unique_ptr<CpuLocalReducer>(new CpuLocalReducer(std::move(impl)));
}

CpuLocalReducer::CpuLocalReducer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CpuLocalReducer::~CpuLocalReducer() = default;

int CpuLocalReducer::rank() const { return impl_->options().rank; }
int CpuLocalReducer::world_size() const { return impl_->options().world_size; }
size_t CpuLocalReducer::capacity() const { return impl_->options().capacity; }

absl::Status CpuLocalReducer::AllReduce(absl::Span<float> values,
                                        const LocalReduceOptions& options,
                                        const SwarmStep& swarm_step) {
  return impl_->AllReduce(values, options, swarm_step);
}

}  // namespace hivemind
