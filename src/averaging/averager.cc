#include "hivemind/averaging/averager.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "hivemind/averaging/matchmaking.h"
#include "hivemind/averaging/moshpit.h"
#include "util/mutex.h"

namespace hivemind {
namespace internal {

// One step: written by the averager's thread, read by any handle.
class StepState {
 public:
  explicit StepState(StepOptions options) : options_(std::move(options)) {}

  const StepOptions& options() const { return options_; }

  StepStage stage() {
    MutexLock lock(&mu_);
    return stage_;
  }
  void set_stage(StepStage stage) {
    MutexLock lock(&mu_);
    stage_ = stage;
  }
  bool cancelled() {
    MutexLock lock(&mu_);
    return cancelled_;
  }
  void Cancel() {
    MutexLock lock(&mu_);
    cancelled_ = true;
  }

  void Finish(absl::StatusOr<StepResult> result) {
    MutexLock lock(&mu_);
    if (stage_ == StepStage::kDone) return;
    result_ = std::move(result);
    stage_ = StepStage::kDone;
    done_.SignalAll();
  }

  bool WaitUntil(absl::Time deadline) {
    MutexLock lock(&mu_);
    return done_.WaitUntil(&mu_, deadline, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return stage_ == StepStage::kDone;
    });
  }

  absl::StatusOr<StepResult> result() {
    MutexLock lock(&mu_);
    return result_;
  }

 private:
  const StepOptions options_;
  Mutex mu_;
  CondVar done_;
  StepStage stage_ ABSL_GUARDED_BY(mu_) = StepStage::kQueued;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  absl::StatusOr<StepResult> result_ ABSL_GUARDED_BY(mu_) =
      absl::UnknownError("step not finished");
};

class AveragerCore {
 public:
  AveragerCore(Dht* dht, std::vector<size_t> sizes, AveragerOptions options,
               std::unique_ptr<Endpoint> endpoint);
  ~AveragerCore() { Shutdown(); }

  StepHandle Enqueue(const StepOptions& options);
  TensorLock LockTensors() {
    std::unique_lock<std::mutex> lock(tensors_mu_);
    tensors_.resize(total_, 0.0f);  // allocated on first use
    return TensorLock(std::move(lock), absl::MakeSpan(tensors_), &sizes_);
  }
  const std::vector<size_t>& sizes() const { return sizes_; }
  std::string group_bits() {
    MutexLock lock(&mu_);
    return group_bits_;
  }
  Endpoint* endpoint() { return endpoint_.get(); }
  void Shutdown();

 private:
  void Loop();
  void RunStep(StepState& step);
  absl::StatusOr<MatchedGroup> FindGroup(StepState& step, const std::string& round,
                                         absl::Time deadline, int* attempts);
  absl::StatusOr<AllReduceReport> Average(const MatchedGroup& matched,
                                          const StepOptions& step, absl::Time deadline);
  // Where a step's all-reduce runs: the caller's values, or (tensor steps, auxiliary
  // peers) work_ holding a copy.
  absl::Span<float> Workspace(const StepOptions& step);
  MatchmakingOptions MatchmakingFor(const StepState& step, const std::string& round,
                                    absl::Duration time);
  bool stopping() {
    MutexLock lock(&mu_);
    return stopping_;
  }

  Dht* const dht_;
  const std::vector<size_t> sizes_;
  const size_t total_;
  const AveragerOptions options_;
  const uint64_t schema_hash_;
  std::unique_ptr<Endpoint> endpoint_;
  std::unique_ptr<Matchmaker> matchmaker_;
  std::unique_ptr<AllReducer> allreducer_;

  std::mutex tensors_mu_;       // guards tensors_ (a std::mutex: TensorLock holds it)
  std::vector<float> tensors_;  // empty until first used

  // Touched only by the step thread.
  std::vector<float> work_;
  std::vector<float> residual_;
  std::vector<float> reference_;
  uint64_t reference_hash_ = 0;

  Mutex mu_;
  CondVar wake_;
  std::deque<std::shared_ptr<StepState>> queue_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<StepState> running_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t steps_started_ ABSL_GUARDED_BY(mu_) = 0;
  std::string group_bits_ ABSL_GUARDED_BY(mu_);
  std::mutex shutdown_mu_;  // serializes Shutdown calls (one joins the thread)
  std::thread thread_;
};

namespace {

size_t TotalSize(const std::vector<size_t>& sizes) {
  size_t total = 0;
  for (size_t s : sizes) total += s;
  return total;
}

std::string RandomBits(int length) {
  std::mt19937_64 rng(std::random_device{}());
  std::string bits(static_cast<size_t>(length), '0');
  for (char& c : bits) c = (rng() & 1) ? '1' : '0';
  return bits;
}

// Bits each round appends: enough buckets for a full group to scatter.
int BitsPerRound(int target_group_size) {
  int bits = 1;
  while ((1 << bits) < target_group_size && bits < 16) ++bits;
  return bits;
}

absl::Status ValidateStep(const StepOptions& options) {
  if (!std::isfinite(options.weight) || options.weight < 0.0f) {
    return absl::InvalidArgumentError("step weight must be finite and >= 0");
  }
  if (options.gather.size() > kMaxUserDataSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("gather payload of ", options.gather.size(),
                     " bytes is over the limit of ", kMaxUserDataSize));
  }
  if (options.timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("step timeout must not be negative");
  }
  return absl::OkStatus();
}

}  // namespace

AveragerCore::AveragerCore(Dht* dht, std::vector<size_t> sizes, AveragerOptions options,
                           std::unique_ptr<Endpoint> endpoint)
    : dht_(dht),
      sizes_(std::move(sizes)),
      total_(TotalSize(sizes_)),
      options_(std::move(options)),
      schema_hash_(TensorSchemaHash(sizes_)),
      endpoint_(std::move(endpoint)),
      matchmaker_(std::make_unique<Matchmaker>(endpoint_.get(), dht_)),
      allreducer_(std::make_unique<AllReducer>(endpoint_.get())),
      group_bits_(options_.initial_group_bits.empty()
                      ? RandomBits(options_.group_bits_length)
                      : options_.initial_group_bits) {
  thread_ = std::thread([this] { Loop(); });
}

StepHandle AveragerCore::Enqueue(const StepOptions& options) {
  auto step = std::make_shared<StepState>(options);
  absl::Status valid = ValidateStep(options);
  if (valid.ok() && !options.values.empty() && options.values.size() != total_) {
    valid = absl::InvalidArgumentError(absl::StrCat(
        "step values of ", options.values.size(), " elements for tensors of ", total_));
  }
  if (!valid.ok()) {
    step->Finish(valid);
    return StepHandle(step);
  }
  MutexLock lock(&mu_);
  if (stopping_) {
    step->Finish(absl::CancelledError("the averager has shut down"));
  } else {
    queue_.push_back(step);
    wake_.SignalAll();
  }
  return StepHandle(step);
}

void AveragerCore::Shutdown() {
  std::lock_guard<std::mutex> once(shutdown_mu_);
  std::deque<std::shared_ptr<StepState>> queued;
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    queued.swap(queue_);
    if (running_) running_->Cancel();
    wake_.SignalAll();
  }
  for (auto& step : queued) {
    step->Finish(absl::CancelledError("the averager shut down before the step began"));
  }
  // Ends a running all-reduce (kCancelled) and cuts matchmaking requests short.
  endpoint_->Shutdown();
  if (thread_.joinable()) thread_.join();
}

void AveragerCore::Loop() {
  for (;;) {
    std::shared_ptr<StepState> step;
    {
      MutexLock lock(&mu_);
      wake_.WaitUntil(&mu_, absl::InfiniteFuture(),
                      [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
                        return stopping_ || !queue_.empty();
                      });
      if (!stopping_ && queue_.empty()) continue;
      if (stopping_) return;
      step = queue_.front();
      queue_.pop_front();
      running_ = step;
    }
    RunStep(*step);
    MutexLock lock(&mu_);
    running_.reset();
  }
}

void AveragerCore::RunStep(StepState& step) {
  const StepOptions& options = step.options();
  std::string round = options.round;
  {
    MutexLock lock(&mu_);
    if (round.empty()) round = absl::StrCat(steps_started_);
    ++steps_started_;
  }
  const absl::Duration timeout =
      options.timeout > absl::ZeroDuration()
          ? options.timeout
          : options_.matchmaking_time + options_.allreduce_timeout;
  const absl::Time deadline = absl::Now() + timeout;
  StepResult result;
  result.group_bits = group_bits();
  step.set_stage(StepStage::kLookingForGroup);
  absl::StatusOr<MatchedGroup> matched =
      FindGroup(step, round, deadline, &result.attempts);
  if (!matched.ok()) return step.Finish(matched.status());
  step.set_stage(StepStage::kAveraging);
  absl::StatusOr<AllReduceReport> report = Average(*matched, options, deadline);
  if (!report.ok()) return step.Finish(report.status());
  absl::StatusOr<std::string> next =
      NextGroupBits(matched->group, matched->my_index, result.group_bits,
                    BitsPerRound(options_.target_group_size));
  if (next.ok()) {
    MutexLock lock(&mu_);
    group_bits_ = *std::move(next);
  }
  result.group = std::move(matched->group);
  result.my_index = matched->my_index;
  result.report = *std::move(report);
  step.Finish(std::move(result));
}

MatchmakingOptions AveragerCore::MatchmakingFor(const StepState& step,
                                                const std::string& round,
                                                absl::Duration time) {
  MatchmakingOptions mm;
  mm.prefix = options_.prefix;
  mm.round = round;
  mm.group_bits = group_bits();
  mm.schema_hash = schema_hash_;
  mm.target_group_size = options_.target_group_size;
  mm.min_group_size = options_.min_group_size;
  mm.matchmaking_time = time;
  mm.assemble_early = options_.assemble_early;
  mm.self.peer_id = endpoint_->id();
  mm.self.address = endpoint_->address();
  mm.self.bandwidth = options_.bandwidth;
  mm.self.mode = options_.mode;
  mm.self.reference_hash = options_.delta_mode ? reference_hash_ : 0;
  mm.self.user_data = step.options().gather;
  return mm;
}

absl::StatusOr<MatchedGroup> AveragerCore::FindGroup(StepState& step,
                                                     const std::string& round,
                                                     absl::Time deadline, int* attempts) {
  absl::Status last = absl::DeadlineExceededError(
      "the step's timeout left no time to "
      "look for a group");
  for (;;) {
    if (step.cancelled() || stopping()) {
      return absl::CancelledError("the step was cancelled before its all-reduce");
    }
    const absl::Duration left = deadline - absl::Now();
    // The first attempt may be shorter than a full one; retries need a whole one.
    if (left <= absl::ZeroDuration() ||
        (*attempts > 0 && left < options_.matchmaking_time)) {
      return last;
    }
    ++*attempts;
    absl::StatusOr<MatchedGroup> matched = matchmaker_->FindGroup(
        MatchmakingFor(step, round, std::min(left, options_.matchmaking_time)));
    if (matched.ok()) return matched;
    last = matched.status();
    if (stopping()) return absl::CancelledError("the averager shut down");
    if (!step.options().allow_retries ||
        last.code() != absl::StatusCode::kDeadlineExceeded) {
      return last;
    }
  }
}

absl::Span<float> AveragerCore::Workspace(const StepOptions& step) {
  const bool auxiliary = options_.mode == MemberMode::kAuxiliary;
  if (!step.values.empty() && !auxiliary) {
    work_ = {};  // a tensor step's copy is not kept for in-place steps
    return step.values;
  }
  if (!step.values.empty()) {
    work_.assign(step.values.begin(), step.values.end());
  } else {
    std::lock_guard<std::mutex> lock(tensors_mu_);
    tensors_.resize(total_, 0.0f);
    work_ = tensors_;
  }
  return absl::MakeSpan(work_);
}

absl::StatusOr<AllReduceReport> AveragerCore::Average(const MatchedGroup& matched,
                                                      const StepOptions& step,
                                                      absl::Time deadline) {
  const bool auxiliary = options_.mode == MemberMode::kAuxiliary;
  const absl::Span<float> work = Workspace(step);
  AllReduceOptions ar;
  ar.codec = options_.codec;
  ar.weight = auxiliary ? 0.0f : step.weight;
  if (options_.error_feedback && !auxiliary) {
    residual_.resize(work.size(), 0.0f);
    ar.residual = &residual_;
  }
  const GroupMember& me = matched.group.members[static_cast<size_t>(matched.my_index)];
  if (me.reference_hash != 0) ar.reference = &reference_;
  ar.part_size = options_.part_size;
  ar.max_parts_in_flight = options_.max_parts_in_flight;
  ar.sender_timeout = options_.sender_timeout;
  ar.aggregation = options_.aggregation;
  ar.timeout = std::max(absl::Milliseconds(100),
                        std::min(options_.allreduce_timeout, deadline - absl::Now()));
  absl::StatusOr<AllReduceReport> report =
      allreducer_->Run(matched.group, matched.my_index, work, ar);
  if (!report.ok() || auxiliary) return report;
  if (step.values.empty()) {
    std::lock_guard<std::mutex> lock(tensors_mu_);
    tensors_ = work_;
  }
  if (options_.delta_mode) {
    reference_.assign(work.begin(), work.end());
    reference_hash_ = ReferenceHash(reference_);
  }
  return report;
}

}  // namespace internal

StepHandle::StepHandle(std::shared_ptr<internal::StepState> state)
    : state_(std::move(state)) {}

StepStage StepHandle::stage() const { return state_->stage(); }

absl::StatusOr<StepResult> StepHandle::Wait() const {
  while (!state_->WaitUntil(absl::InfiniteFuture())) {
  }
  return state_->result();
}

bool StepHandle::WaitFor(absl::Duration timeout) const {
  return state_->WaitUntil(absl::Now() + timeout);
}

void StepHandle::Cancel() const { state_->Cancel(); }

TensorLock::TensorLock(std::unique_lock<std::mutex> lock, absl::Span<float> flat,
                       const std::vector<size_t>* sizes)
    : lock_(std::move(lock)), flat_(flat), sizes_(sizes) {}

absl::Span<float> TensorLock::tensor(size_t i) const {
  size_t begin = 0;
  for (size_t j = 0; j < i; ++j) begin += (*sizes_)[j];
  return flat_.subspan(begin, (*sizes_)[i]);
}

uint64_t TensorSchemaHash(const std::vector<size_t>& tensor_sizes) {
  std::vector<uint64_t> sizes(tensor_sizes.begin(), tensor_sizes.end());
  return XXH3_64bits(sizes.data(), sizes.size() * sizeof(uint64_t));
}

namespace {

absl::Status ValidateOptions(const std::vector<size_t>& sizes,
                             const AveragerOptions& options) {
  if (options.prefix.empty()) return absl::InvalidArgumentError("prefix is required");
  if (sizes.empty()) return absl::InvalidArgumentError("no tensors to average");
  for (size_t s : sizes) {
    if (s == 0) return absl::InvalidArgumentError("a tensor has no elements");
  }
  if (options.min_group_size < 2 || options.target_group_size < options.min_group_size) {
    return absl::InvalidArgumentError("group sizes must satisfy 2 <= min <= target");
  }
  if ((options.mode == MemberMode::kClient) != options.endpoint.client_mode) {
    return absl::InvalidArgumentError(
        "client mode needs endpoint.client_mode, and only client mode may set it");
  }
  if (options.group_bits_length < 0 || options.group_bits_length > 64) {
    return absl::InvalidArgumentError("group_bits_length must be in [0, 64]");
  }
  if (!options.initial_group_bits.empty() &&
      (options.initial_group_bits.size() !=
           static_cast<size_t>(options.group_bits_length) ||
       options.initial_group_bits.find_first_not_of("01") != std::string::npos)) {
    return absl::InvalidArgumentError(
        "initial_group_bits must be group_bits_length characters '0' or '1'");
  }
  if (options.matchmaking_time <= absl::ZeroDuration() ||
      options.allreduce_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeouts must be positive");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<DecentralizedAverager>> DecentralizedAverager::Create(
    Dht* dht, std::vector<size_t> tensor_sizes, AveragerOptions options) {
  if (dht == nullptr) return absl::InvalidArgumentError("dht is required");
  absl::Status valid = ValidateOptions(tensor_sizes, options);
  if (!valid.ok()) return valid;
  absl::StatusOr<std::unique_ptr<Endpoint>> endpoint = Endpoint::Create(options.endpoint);
  if (!endpoint.ok()) return endpoint.status();
  auto core = std::make_unique<internal::AveragerCore>(
      dht, std::move(tensor_sizes), std::move(options), *std::move(endpoint));
  return std::unique_ptr<DecentralizedAverager>(
      new DecentralizedAverager(std::move(core)));
}

DecentralizedAverager::DecentralizedAverager(std::unique_ptr<internal::AveragerCore> core)
    : core_(std::move(core)) {}

DecentralizedAverager::~DecentralizedAverager() { Shutdown(); }

StepHandle DecentralizedAverager::Step(const StepOptions& options) {
  return core_->Enqueue(options);
}

TensorLock DecentralizedAverager::LockTensors() { return core_->LockTensors(); }

std::string DecentralizedAverager::group_bits() const { return core_->group_bits(); }

const std::vector<size_t>& DecentralizedAverager::tensor_sizes() const {
  return core_->sizes();
}

Endpoint* DecentralizedAverager::endpoint() { return core_->endpoint(); }

void DecentralizedAverager::Shutdown() { core_->Shutdown(); }

}  // namespace hivemind
