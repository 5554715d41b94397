#include "hivemind/optim/progress_tracker.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/time/clock.h"
#include "optim/progress.h"
#include "util/mutex.h"
#include "util/status_macros.h"

namespace hivemind {

using internal::CondVar;
using internal::Mutex;
using internal::MutexLock;

namespace {

// How often a waiter re-checks once the predicted time of the next epoch has passed.
constexpr absl::Duration kReadyPoll = absl::Milliseconds(50);

absl::Status ValidateOptions(const Dht* dht, const ProgressTrackerOptions& o) {
  if (dht == nullptr) return absl::InvalidArgumentError("null dht");
  if (o.prefix.empty()) return absl::InvalidArgumentError("empty prefix");
  if (o.target_batch_size == 0) {
    return absl::InvalidArgumentError("target_batch_size must be positive");
  }
  if (o.min_refresh_period <= absl::ZeroDuration() ||
      o.default_refresh_period <= absl::ZeroDuration() ||
      o.metadata_expiration <= absl::ZeroDuration() ||
      o.dht_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("periods, expiration and timeout must be positive");
  }
  if (o.min_refresh_period > o.max_refresh_period) {
    return absl::InvalidArgumentError("min_refresh_period > max_refresh_period");
  }
  if (!(o.performance_ema_alpha > 0.0 && o.performance_ema_alpha <= 1.0)) {
    return absl::InvalidArgumentError("performance_ema_alpha must be in (0, 1]");
  }
  return absl::OkStatus();
}

// Real-time deadline `d` from now, capped so that waits on an infinite estimate
// still wake up now and then (callers loop).
absl::Time RealDeadline(absl::Duration d) {
  return absl::Now() + std::clamp(d, absl::ZeroDuration(), absl::Seconds(60));
}

}  // namespace

// Two threads: the publisher stores this peer's record (rate-limited), the reader
// reads everyone's (adaptive period). Neither holds mu_ across a DHT call.
class ProgressTracker::Impl {
 public:
  Impl(Dht* dht, ProgressTrackerOptions options)
      : dht_(dht),
        options_(std::move(options)),
        key_(internal::ProgressKey(options_.prefix)),
        self_id_(dht->id()),
        ema_(options_.performance_ema_alpha, Now()) {
    params_.target_batch_size = options_.target_batch_size;
    params_.min_refresh_period = options_.min_refresh_period;
    params_.max_refresh_period = options_.max_refresh_period;
    params_.default_refresh_period = options_.default_refresh_period;
    params_.expected_drift_peers = options_.expected_drift_peers;
    params_.expected_drift_rate = options_.expected_drift_rate;
    local_.peer_id = self_id_;
    local_.time = Now();
    local_.client_mode = options_.client_mode;
  }

  ~Impl() { Shutdown(); }

  void Start() {
    const absl::Duration period = Fetch();
    publisher_ = std::thread([this] { PublishLoop(); });
    reader_ = std::thread([this, period] { ReadLoop(period); });
  }

  void Report(uint64_t epoch, uint64_t samples) {
    MutexLock lock(&mu_);
    ReportLocked(epoch, samples);
  }

  void UpdateEpoch(uint64_t epoch) {
    MutexLock lock(&mu_);
    publish_now_ = true;
    ReportLocked(epoch, 0);
  }

  PeerProgress local_progress() const {
    MutexLock lock(&mu_);
    return local_;
  }

  GlobalProgress global_progress() const {
    MutexLock lock(&mu_);
    return global_;
  }

  bool ready() const {
    MutexLock lock(&mu_);
    return ReadyLocked(Now());
  }

  absl::Duration EstimatedTimeToNextEpoch() const {
    MutexLock lock(&mu_);
    const absl::Time now = Now();
    if (ReadyLocked(now)) return absl::ZeroDuration();
    return global_.eta_next_epoch - now;
  }

  absl::Status WaitUntilReady(absl::Time deadline);
  void Shutdown();

 private:
  absl::Time Now() const { return options_.clock ? options_.clock() : absl::Now(); }

  // Ready when the swarm is ahead, or has (probably) accumulated the target: this
  // peer's samples exactly, the others' extrapolated from their last reports at
  // their rates (their records are stale by up to a refresh period). This peer's
  // own slowness never makes it ready: a lone peer ends an epoch exactly at the
  // target.
  bool ReadyLocked(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return global_.epoch > local_.epoch ||
           global_.samples_accumulated >= options_.target_batch_size ||
           EstimatedSamplesLocked(now) >= static_cast<double>(options_.target_batch_size);
  }

  double EstimatedSamplesLocked(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    double total = local_.epoch == global_.epoch
                       ? static_cast<double>(local_.samples_accumulated)
                       : 0.0;
    for (const PeerProgress& p : others_) {
      if (p.epoch == global_.epoch) total += internal::ExtrapolatedSamples(p, now);
    }
    return total;
  }

  void ReportLocked(uint64_t epoch, uint64_t samples) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Recomputes global_ from others_ and local_, keeping the reader's schedule.
  void RecomputeLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the swarm once; returns the period until the next read.
  absl::Duration Fetch();
  void ReadLoop(absl::Duration first_period);
  void PublishLoop();
  // When the publisher should store next (real time); InfiniteFuture if never.
  absl::Time NextPublishLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish(const PeerProgress& record, bool departed);

  Dht* const dht_;
  const ProgressTrackerOptions options_;
  const std::string key_;
  const PeerId self_id_;
  internal::EstimateParams params_;

  mutable Mutex mu_;
  CondVar cv_;  // signalled on every change of state below
  internal::PerformanceEma ema_ ABSL_GUARDED_BY(mu_);
  PeerProgress local_ ABSL_GUARDED_BY(mu_);
  std::vector<PeerProgress> others_ ABSL_GUARDED_BY(mu_);
  GlobalProgress global_ ABSL_GUARDED_BY(mu_);
  absl::Duration refresh_period_ ABSL_GUARDED_BY(mu_) = absl::Seconds(1);
  bool reported_ ABSL_GUARDED_BY(mu_) = false;     // publish only after a report
  bool publish_now_ ABSL_GUARDED_BY(mu_) = false;  // a new epoch: skip the rate limit
  uint64_t changes_ ABSL_GUARDED_BY(mu_) = 0;      // local reports so far
  uint64_t updates_ ABSL_GUARDED_BY(mu_) = 0;      // recomputations of global_
  uint64_t published_changes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_publish_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();  // real time
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  Mutex join_mu_;  // serializes Shutdown callers
  bool joined_ ABSL_GUARDED_BY(join_mu_) = false;
  std::thread publisher_;
  std::thread reader_;
};

void ProgressTracker::Impl::ReportLocked(uint64_t epoch, uint64_t samples) {
  const absl::Time now = Now();
  if (epoch == local_.epoch && samples > local_.samples_accumulated) {
    ema_.Update(static_cast<double>(samples - local_.samples_accumulated), now);
  } else {
    ema_.ResetTimer(now);  // a new epoch or a reset: the interval says nothing
  }
  local_.epoch = epoch;
  local_.samples_accumulated = samples;
  local_.samples_per_second = ema_.samples_per_second();
  local_.time = now;
  reported_ = true;
  ++changes_;
  RecomputeLocked(now);
  cv_.SignalAll();
}

void ProgressTracker::Impl::RecomputeLocked(absl::Time now) {
  const absl::Time next_fetch = global_.next_fetch_time;
  global_ = internal::EstimateGlobalProgress(others_, local_, params_, now);
  refresh_period_ = global_.next_fetch_time - now;
  global_.next_fetch_time = next_fetch;
  ++updates_;
}

absl::Duration ProgressTracker::Impl::Fetch() {
  auto records = dht_->Get(key_, options_.dht_timeout);
  MutexLock lock(&mu_);
  const absl::Time now = Now();
  if (records.ok()) {
    others_ = internal::LiveProgress(*records);
    others_.erase(
        std::remove_if(others_.begin(), others_.end(),
                       [&](const PeerProgress& p) { return p.peer_id == self_id_; }),
        others_.end());
  }
  global_ = internal::EstimateGlobalProgress(others_, local_, params_, now);
  refresh_period_ = global_.next_fetch_time - now;
  ++updates_;
  cv_.SignalAll();
  return refresh_period_;
}

void ProgressTracker::Impl::ReadLoop(absl::Duration period) {
  while (true) {
    {
      MutexLock lock(&mu_);
      const bool stop = cv_.WaitUntil(
          &mu_, RealDeadline(period),
          [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return shutdown_; });
      if (stop) return;
    }
    period = Fetch();
  }
}

absl::Time ProgressTracker::Impl::NextPublishLocked() const {
  if (!reported_) return absl::InfiniteFuture();
  if (publish_now_) return absl::InfinitePast();
  absl::Time next = last_publish_ + options_.metadata_expiration / 2;  // keep alive
  if (changes_ != published_changes_) {
    next = std::min(next, last_publish_ + refresh_period_);
  }
  return next;
}

void ProgressTracker::Impl::PublishLoop() {
  while (true) {
    PeerProgress record;
    {
      MutexLock lock(&mu_);
      uint64_t seen = changes_;
      while (!shutdown_ && absl::Now() < NextPublishLocked()) {
        const absl::Time wake = RealDeadline(NextPublishLocked() - absl::Now());
        cv_.WaitUntil(&mu_, wake, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return shutdown_ || changes_ != seen;
        });
        seen = changes_;
      }
      if (shutdown_) return;
      record = local_;
      publish_now_ = false;
      published_changes_ = changes_;
      last_publish_ = absl::Now();
    }
    Publish(record, /*departed=*/false);
  }
}

void ProgressTracker::Impl::Publish(const PeerProgress& record, bool departed) {
  // A failed store is retried by the schedule: the keep-alive (or the next report)
  // publishes again within metadata_expiration / 2. Replace: a peer publishes up to
  // twice a second, and every version would otherwise stay under the key for
  // minutes (bench: 412 values after 80 s with 4 peers, one lookup 9 s).
  dht_->Replace(key_, record.peer_id, internal::EncodeProgressRecord(record, departed),
                Now() + options_.metadata_expiration, options_.dht_timeout)
      .IgnoreError();
}

absl::Status ProgressTracker::Impl::WaitUntilReady(absl::Time deadline) {
  MutexLock lock(&mu_);
  while (true) {
    const absl::Time now = Now();
    if (shutdown_) return absl::CancelledError("progress tracker shut down");
    if (ReadyLocked(now)) return absl::OkStatus();
    if (now >= deadline) return absl::DeadlineExceededError("swarm not ready in time");
    const uint64_t seen = updates_;
    // Wake at the predicted time (or, once it has passed, every 50 ms) to extrapolate
    // the others' progress again.
    const absl::Time wake = RealDeadline(
        std::min(deadline, std::max(global_.eta_next_epoch, now + kReadyPoll)) - now);
    cv_.WaitUntil(&mu_, wake, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return shutdown_ || updates_ != seen;
    });
  }
}

void ProgressTracker::Impl::Shutdown() {
  MutexLock join_lock(&join_mu_);
  if (joined_) return;
  joined_ = true;
  bool announce = false;
  PeerProgress record;
  {
    MutexLock lock(&mu_);
    shutdown_ = true;
    cv_.SignalAll();
    announce = options_.announce_departure && reported_;
    record = local_;
  }
  if (publisher_.joinable()) publisher_.join();
  if (reader_.joinable()) reader_.join();
  if (announce) Publish(record, /*departed=*/true);
}

absl::StatusOr<std::unique_ptr<ProgressTracker>> ProgressTracker::Create(
    Dht* dht, ProgressTrackerOptions options) {
  HIVEMIND_RETURN_IF_ERROR(ValidateOptions(dht, options));
  auto impl = std::make_unique<Impl>(dht, std::move(options));
  impl->Start();
  return std::unique_ptr<ProgressTracker>(new ProgressTracker(std::move(impl)));
}

ProgressTracker::ProgressTracker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProgressTracker::~ProgressTracker() { Shutdown(); }

void ProgressTracker::ReportLocalProgress(uint64_t epoch, uint64_t samples_accumulated) {
  impl_->Report(epoch, samples_accumulated);
}
void ProgressTracker::UpdateEpoch(uint64_t new_epoch) { impl_->UpdateEpoch(new_epoch); }
PeerProgress ProgressTracker::local_progress() const { return impl_->local_progress(); }
GlobalProgress ProgressTracker::global_progress() const {
  return impl_->global_progress();
}
bool ProgressTracker::ready_to_update_epoch() const { return impl_->ready(); }
absl::Duration ProgressTracker::EstimatedTimeToNextEpoch() const {
  return impl_->EstimatedTimeToNextEpoch();
}
absl::Status ProgressTracker::WaitUntilReady(absl::Time deadline) {
  return impl_->WaitUntilReady(deadline);
}
void ProgressTracker::Shutdown() { impl_->Shutdown(); }

absl::StatusOr<std::vector<PeerProgress>> ReadProgress(Dht* dht, absl::string_view prefix,
                                                       absl::Duration timeout) {
  if (dht == nullptr) return absl::InvalidArgumentError("null dht");
  if (prefix.empty()) return absl::InvalidArgumentError("empty prefix");
  HIVEMIND_ASSIGN_OR_RETURN(auto records,
                            dht->Get(internal::ProgressKey(prefix), timeout));
  return internal::LiveProgress(records);
}

}  // namespace hivemind
