#include "hivemind/optim/optimizer.h"

#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/archive.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hivemind/averaging/averager.h"
#include "hivemind/averaging/state_sharing.h"
#include "hivemind/util/logging.h"
#include "optim/host_staging.h"
#include "util/status_macros.h"

namespace hivemind {
namespace internal {

class OptimizerCore {
 public:
  OptimizerCore(Dht* dht, std::vector<torch::Tensor> params,
                std::unique_ptr<InnerOptimizer> inner, OptimizerOptions options)
      : dht_(dht),
        params_(std::move(params)),
        inner_(std::move(inner)),
        options_(std::move(options)) {
    for (const torch::Tensor& p : params_) sizes_.push_back(p.numel());
    for (size_t s : sizes_) total_ += s;
    // Gradients of a model on a device (CUDA) are summed there: a step then costs a
    // few kernels and one wait, and they reach host memory once an epoch.
    if (!params_.empty() && !params_.front().device().is_cpu()) {
      for (const torch::Tensor& p : params_) device_acc_.push_back(torch::zeros_like(p));
    } else {
      grad_acc_.assign(total_, 0.0f);
    }
  }
  ~OptimizerCore() { Shutdown(); }

  absl::Status Start();
  absl::StatusOr<OptimizerStepReport> Step(int64_t batch_size, double loss);
  // Downloads the swarm's state, of epoch `min_epoch` or later, waiting at most
  // `timeout` (default: the options' load_state_timeout).
  absl::Status LoadStateFromPeers(
      std::optional<absl::Duration> timeout = std::nullopt,
      int64_t min_epoch = std::numeric_limits<int64_t>::min());
  absl::Status SaveCheckpoint(const std::string& path);
  absl::Status LoadCheckpoint(const std::string& path);
  void ZeroGrad() { inner_->ZeroGrad(); }
  int64_t local_epoch() const { return local_epoch_; }
  const OptimizerStats& stats() const { return stats_; }
  GlobalProgress global_progress() const { return tracker_->global_progress(); }
  InnerOptimizer& inner() { return *inner_; }
  const PeerId& id() const { return state_averager_->endpoint()->id(); }
  absl::Status Finish(absl::Duration window);
  void Shutdown();

 private:
  bool local_updates() const {
    return options_.use_local_updates || options_.diloco_outer_lr > 0.0;
  }
  bool auxiliary() const { return options_.mode == MemberMode::kAuxiliary; }
  absl::StatusOr<std::unique_ptr<DecentralizedAverager>> MakeAverager(
      const std::string& name, const std::vector<size_t>& sizes, const Codec* codec,
      bool error_feedback);
  // Starts averaging the optimizer's statistics, flattened into `flat` (none: an
  // empty list, no round).
  std::vector<torch::Tensor> StartStatistics(std::vector<float>* flat,
                                             std::optional<StepHandle>* step);
  absl::Status Accumulate(int64_t batch_size);
  void EndEpoch(OptimizerStepReport* report);
  // Averages `values` through `averager` for this epoch: Start queues the round,
  // Finish waits for it, replaces `values` with the average (unless it failed
  // entirely) and returns the outcome and the group size.
  StepHandle StartAveraging(DecentralizedAverager& averager,
                            const std::vector<float>& values, float weight);
  absl::Status FinishAveraging(DecentralizedAverager& averager, const StepHandle& step,
                               std::vector<float>& values, int* group_size);
  absl::Status Average(DecentralizedAverager& averager, std::vector<float>& values,
                       float weight, int* group_size) {
    return FinishAveraging(averager, StartAveraging(averager, values, weight), values,
                           group_size);
  }
  std::vector<float> MeanGradients() const;
  void ApplyGradients(const std::vector<float>& grads);
  void ApplyAveragedGradients(OptimizerStepReport* report);
  // Delayed updates: the gradient round running in the background.
  struct Pending {
    StepHandle step;
    std::vector<float> grads;  // the local mean gradients, then the average
    int64_t epoch;
  };
  void StartDelayedRound(OptimizerStepReport* report);
  void FinishDelayedRound(OptimizerStepReport* report);
  void ApplyDiLoCo(OptimizerStepReport* report);
  void AverageParameters();
  std::vector<float> FlatParameters() const;
  void SetParameters(const std::vector<float>& flat);
  absl::StatusOr<PeerState> CurrentState() const;
  void InnerStep();
  void ResetAccumulator();
  absl::Status ApplyState(const PeerState& state);
  void PublishState();
  void LogEpoch(const OptimizerStepReport& report);
  // One line per round: at info level when it succeeded (hivemind's "Finished
  // averaging round"), a warning when it failed.
  static void LogRound(absl::string_view what, int64_t epoch, const absl::Status& status,
                       int group_size);
  std::string Schema() const;

  Dht* const dht_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<InnerOptimizer> inner_;
  const OptimizerOptions options_;
  std::vector<size_t> sizes_;
  size_t total_ = 0;

  std::unique_ptr<ProgressTracker> tracker_;
  std::unique_ptr<DecentralizedAverager> grad_averager_;
  std::unique_ptr<DecentralizedAverager> state_averager_;
  // The optimizer's statistics, averaged beside the parameters; made at the first
  // state round (they exist only after the inner optimizer's first step).
  std::unique_ptr<DecentralizedAverager> stats_averager_;
  std::unique_ptr<StateServer> state_server_;  // null in client mode

  // The sum over batches of gradient x batch size: in host memory, or for a model on
  // a device, on that device (one tensor per parameter; grad_acc_ stays empty).
  std::vector<float> grad_acc_;
  std::vector<torch::Tensor> device_acc_;
  mutable HostStaging staging_;  // host <-> device copies of params, grads, statistics
  int64_t samples_ = 0;
  int64_t local_epoch_ = 0;
  // The swarm epoch at which to try loading the state again after a failed
  // download; 0: none due.
  uint64_t reload_at_epoch_ = 0;
  // Set when a round of this peer failed while the swarm had others to average
  // with: its parameters now differ from theirs, and its next step loads the state.
  bool resync_ = false;
  // Whether a round of the last epoch failed while others were there.
  bool last_epoch_failed_ = false;
  // After a round that failed while others were there, asks the next step to load
  // the swarm's state (see Step).
  void ResyncIfOthersAveraged(const absl::Status& round);
  // Whether the tracker sees trainers besides this peer.
  bool OthersTrain() const;
  double loss_sum_ = 0.0;
  int64_t loss_count_ = 0;
  std::vector<float> anchor_;    // DiLoCo: parameters at the start of the epoch
  std::vector<float> momentum_;  // DiLoCo: the outer optimizer's momentum
  std::optional<Pending> pending_;
  OptimizerStats stats_;
  bool shut_down_ = false;
};

namespace {

std::string ShortId(const PeerId& id) { return id.substr(0, 8); }

// Downloads tried in a row when the donors' state changes mid-download.
constexpr int kLoadAttempts = 3;

// The inner optimizer's state of parameter `p`. libtorch keys it by the parameter's
// TensorImpl: its address as text up to 1.13 (Debian's), the address itself in 2.x
// (the CUDA builds of the GPU machines).
template <typename StateMap>
auto FindParamState(StateMap& state, const torch::Tensor& p) {
  if constexpr (std::is_same_v<typename StateMap::key_type, std::string>) {
    std::ostringstream key;
    key << static_cast<const void*>(p.unsafeGetTensorImpl());
    return state.find(key.str());
  } else {
    return state.find(p.unsafeGetTensorImpl());
  }
}

absl::Status ValidateParams(const std::vector<torch::Tensor>& params) {
  if (params.empty()) return absl::InvalidArgumentError("no parameters");
  for (const torch::Tensor& p : params) {
    if (!p.defined() || p.scalar_type() != torch::kFloat || !p.is_contiguous() ||
        p.numel() == 0) {
      return absl::InvalidArgumentError(
          "parameters must be non-empty contiguous float32 tensors");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateOptions(const OptimizerOptions& o) {
  if (o.run_id.empty()) return absl::InvalidArgumentError("run_id is required");
  if (o.target_batch_size <= 0) {
    return absl::InvalidArgumentError("target_batch_size must be positive");
  }
  if (o.batch_size_per_step < 0 || o.average_state_every < 0 ||
      o.load_state_max_donors < 1 || o.load_state_min_agreeing_donors < 1) {
    return absl::InvalidArgumentError(
        "batch_size_per_step and average_state_every must be >= 0, "
        "load_state_max_donors and load_state_min_agreeing_donors >= 1");
  }
  if (!(o.diloco_outer_lr >= 0.0) || !(o.diloco_outer_momentum >= 0.0) ||
      o.diloco_outer_momentum >= 1.0) {
    return absl::InvalidArgumentError("DiLoCo needs lr >= 0 and momentum in [0, 1)");
  }
  if (!o.endpoint.client_mode && !absl::EndsWith(o.endpoint.listen_address, ":0")) {
    return absl::InvalidArgumentError(
        "endpoint.listen_address must use port 0 (the optimizer opens one endpoint per "
        "averager)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream data;
  data << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return data.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<DecentralizedAverager>> OptimizerCore::MakeAverager(
    const std::string& name, const std::vector<size_t>& sizes, const Codec* codec,
    bool error_feedback) {
  AveragerOptions a;
  a.prefix = absl::StrCat(options_.run_id, ".", name);
  a.endpoint = options_.endpoint;
  a.mode = options_.mode;
  a.bandwidth = options_.bandwidth;
  a.target_group_size = options_.target_group_size;
  a.min_group_size = options_.min_group_size;
  a.matchmaking_time = options_.matchmaking_time;
  // A peer that misses a round goes on (local gradients, or it loads the state), so
  // rounds need not wait for absent peers.
  a.assemble_early = true;
  a.allreduce_timeout = options_.averaging_timeout;
  a.codec = codec;
  a.error_feedback = error_feedback && codec != nullptr;
  a.aggregation = options_.aggregation;
  return DecentralizedAverager::Create(dht_, sizes, std::move(a));
}

absl::Status OptimizerCore::Start() {
  ProgressTrackerOptions t;
  t.prefix = options_.run_id;
  t.target_batch_size = static_cast<uint64_t>(options_.target_batch_size);
  t.client_mode = options_.mode != MemberMode::kNode;
  HIVEMIND_ASSIGN_OR_RETURN(tracker_, ProgressTracker::Create(dht_, std::move(t)));
  HIVEMIND_ASSIGN_OR_RETURN(
      grad_averager_,
      MakeAverager("grads", sizes_, options_.grad_codec, options_.grad_error_feedback));
  HIVEMIND_ASSIGN_OR_RETURN(state_averager_,
                            MakeAverager("params", sizes_, options_.state_codec, false));
  if (!options_.endpoint.client_mode) {
    StateServerOptions s;
    s.prefix = absl::StrCat(options_.run_id, ".state");
    s.zstd_level = options_.state_load_zstd_level;
    HIVEMIND_ASSIGN_OR_RETURN(state_server_,
                              StateServer::Create(state_averager_->endpoint(), dht_, s));
  }
  if (options_.diloco_outer_lr > 0.0) {
    anchor_ = FlatParameters();
    momentum_.assign(total_, 0.0f);
  }
  PublishState();
  return absl::OkStatus();
}

void OptimizerCore::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  if (state_server_) state_server_->Shutdown();
  if (grad_averager_) grad_averager_->Shutdown();
  if (state_averager_) state_averager_->Shutdown();
  if (stats_averager_) stats_averager_->Shutdown();
  if (tracker_) tracker_->Shutdown();
}

absl::StatusOr<OptimizerStepReport> OptimizerCore::Step(int64_t batch_size, double loss) {
  if (shut_down_) return absl::CancelledError("the optimizer has shut down");
  OptimizerStepReport report;
  // With delayed updates the others advance their epoch when their round starts,
  // so one epoch behind still meets them in that round.
  const uint64_t allowed_lag = options_.delay_updates ? 1 : 0;
  const uint64_t swarm_epoch = tracker_->global_progress().epoch;
  const bool behind = swarm_epoch > static_cast<uint64_t>(local_epoch_) + allowed_lag;
  // A peer whose last download failed holds parameters the swarm does not share:
  // it tries again at the next epoch.
  const bool retry_load = reload_at_epoch_ > 0 && swarm_epoch >= reload_at_epoch_;
  const bool resync = std::exchange(resync_, false) && !pending_;
  if ((behind || retry_load || resync) && !auxiliary()) {
    // Behind the swarm: the round of this epoch is over; catch up instead. A peer
    // that only missed a round (resync) gives the download no longer than a round:
    // the donors it sees may be gone, and it can train on meanwhile.
    pending_.reset();
    const absl::Time start = absl::Now();
    const bool catch_up = behind || retry_load;
    const std::optional<absl::Duration> timeout =
        catch_up ? std::nullopt
                 : std::optional<absl::Duration>(options_.averaging_timeout);
    // After a missed round: the state of the epoch whose round it missed (donors that
    // have not finished it yet) or a later one.
    const int64_t min_epoch =
        catch_up ? std::numeric_limits<int64_t>::min() : local_epoch_ - 1;
    absl::Status loaded = LoadStateFromPeers(timeout, min_epoch);
    // "State changed": the donors moved to a newer state mid-download; that one is
    // what to fetch now.
    for (int attempt = 1; attempt < kLoadAttempts && absl::IsFailedPrecondition(loaded);
         ++attempt) {
      loaded = LoadStateFromPeers(timeout, min_epoch);
    }
    stats_.wait_time += absl::Now() - start;
    report.loaded_state = loaded.ok();
    if (loaded.ok() || catch_up) reload_at_epoch_ = 0;
    if (loaded.ok() && catch_up &&
        swarm_epoch > static_cast<uint64_t>(local_epoch_) + allowed_lag) {
      // The donors' state is older than the swarm's epoch (they are behind too, or
      // this peer's view of the swarm is): train on from its parameters at the
      // swarm's epoch and look for a newer state at the next one, rather than load
      // the same state again at every step.
      local_epoch_ = static_cast<int64_t>(swarm_epoch);
      tracker_->UpdateEpoch(swarm_epoch);
      reload_at_epoch_ = swarm_epoch + 1;
    }
    if (!loaded.ok() && !catch_up) {
      HIVEMIND_LOG(kWarning, "could not load state from peers after a missed round (",
                   loaded.ToString(), "); going on with local parameters");
    } else if (!loaded.ok()) {
      HIVEMIND_LOG(kWarning, "could not load state from peers (", loaded.ToString(),
                   "); jumping to the swarm's epoch with local parameters, trying "
                   "again at the next epoch");
      local_epoch_ = static_cast<int64_t>(swarm_epoch);
      tracker_->UpdateEpoch(static_cast<uint64_t>(local_epoch_));
      reload_at_epoch_ = swarm_epoch + 1;
    }
    report.epoch = local_epoch_;
    return report;
  }
  if (auxiliary()) {
    // An auxiliary peer holds no state of its own: it follows the swarm's epoch and
    // joins a round once trainers have gathered samples toward it.
    if (swarm_epoch > static_cast<uint64_t>(local_epoch_)) {
      local_epoch_ = static_cast<int64_t>(swarm_epoch);
      tracker_->UpdateEpoch(swarm_epoch);
    }
    // Publishing (no samples) makes the trainers count it as a group member.
    tracker_->ReportLocalProgress(static_cast<uint64_t>(local_epoch_), 0);
    // It starts matchmaking a little ahead of the swarm's ETA: its view of the
    // trainers' progress lags, and a declared peer waits for the others anyway.
    const absl::Duration ahead = options_.matchmaking_time / 2;
    const absl::Time wake = absl::Now() + absl::Milliseconds(200);
    while (absl::Now() < wake && tracker_->EstimatedTimeToNextEpoch() > ahead) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    const GlobalProgress global = tracker_->global_progress();
    if (tracker_->EstimatedTimeToNextEpoch() > ahead ||
        global.epoch != static_cast<uint64_t>(local_epoch_) ||
        global.samples_accumulated == 0) {
      report.epoch = local_epoch_;
      return report;
    }
  } else {
    if (batch_size <= 0) batch_size = options_.batch_size_per_step;
    if (batch_size <= 0) return absl::InvalidArgumentError("batch size must be positive");
    HIVEMIND_RETURN_IF_ERROR(Accumulate(batch_size));
    if (pending_ && pending_->step.done()) FinishDelayedRound(&report);
    if (std::isfinite(loss)) {
      loss_sum_ += loss;
      ++loss_count_;
    }
    tracker_->ReportLocalProgress(static_cast<uint64_t>(local_epoch_),
                                  static_cast<uint64_t>(samples_));
  }
  if (tracker_->ready_to_update_epoch()) EndEpoch(&report);
  report.epoch = local_epoch_;
  return report;
}

absl::Status OptimizerCore::Accumulate(int64_t batch_size) {
  std::vector<torch::Tensor> grads;
  for (const torch::Tensor& p : params_) {
    torch::Tensor g = p.grad();
    if (!g.defined()) g = torch::zeros_like(p);
    grads.push_back(g.contiguous());
  }
  // One check for all gradients: one wait for the device, not one per tensor.
  std::vector<torch::Tensor> finite;
  for (const torch::Tensor& g : grads) finite.push_back(torch::isfinite(g).all());
  if (!torch::stack(finite).all().item<bool>()) {
    return absl::InvalidArgumentError("a gradient holds NaN or Inf; batch skipped");
  }
  if (local_updates()) {
    InnerStep();
  } else if (!device_acc_.empty()) {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < grads.size(); ++i) {
      device_acc_[i].add_(grads[i], static_cast<double>(batch_size));
    }
  } else {
    const float scale = static_cast<float>(batch_size);
    float* acc = grad_acc_.data();
    for (const torch::Tensor& device_grad : grads) {
      const torch::Tensor g =
          device_grad.device().is_cpu() ? device_grad : device_grad.to(torch::kCPU);
      const float* src = g.data_ptr<float>();
      for (int64_t i = 0; i < g.numel(); ++i) acc[i] += src[i] * scale;
      acc += g.numel();
    }
  }
  samples_ += batch_size;
  return absl::OkStatus();
}

StepHandle OptimizerCore::StartAveraging(DecentralizedAverager& averager,
                                         const std::vector<float>& values, float weight) {
  {
    TensorLock tensors = averager.LockTensors();
    std::copy(values.begin(), values.end(), tensors.flat().begin());
  }
  StepOptions step;
  step.weight = weight;
  step.round = absl::StrCat("e", local_epoch_);
  step.timeout = options_.averaging_timeout;
  // One matchmaking attempt: a peer that found no group has missed the swarm's
  // round; its next Step sees it behind and loads the state instead.
  step.allow_retries = false;
  return averager.Step(step);
}

absl::Status OptimizerCore::FinishAveraging(DecentralizedAverager& averager,
                                            const StepHandle& step,
                                            std::vector<float>& values, int* group_size) {
  const absl::Time start = absl::Now();
  absl::StatusOr<StepResult> result = step.Wait();
  stats_.wait_time += absl::Now() - start;
  if (!result.ok()) {
    ++stats_.rounds_failed;
    return result.status();
  }
  stats_.bytes_sent += result->report.bytes_sent;
  stats_.bytes_received += result->report.bytes_received;
  *group_size = static_cast<int>(result->group.members.size());
  {
    TensorLock tensors = averager.LockTensors();
    values.assign(tensors.flat().begin(), tensors.flat().end());
  }
  for (const SpanOutcome& span : result->report.spans) {
    if (!span.status.ok()) {
      ++stats_.rounds_failed;
      return absl::Status(
          span.status.code(),
          absl::StrCat("part of the vector kept local values: ", span.status.message()));
    }
  }
  ++stats_.rounds_ok;
  return absl::OkStatus();
}

void OptimizerCore::EndEpoch(OptimizerStepReport* report) {
  report->epoch_advanced = true;
  last_epoch_failed_ = false;
  if (options_.diloco_outer_lr > 0.0) {
    ApplyDiLoCo(report);
  } else if (options_.delay_updates && !local_updates()) {
    StartDelayedRound(report);
  } else if (!local_updates()) {
    ApplyAveragedGradients(report);
  } else {
    report->averaging_status = absl::OkStatus();
  }
  ResetAccumulator();
  ++local_epoch_;
  const bool average_state =
      options_.use_local_updates || (options_.average_state_every > 0 &&
                                     local_epoch_ % options_.average_state_every == 0);
  // With a delayed round pending, the parameters averaged here lack its update;
  // every member of that round applies the same average later, so they stay equal.
  if (average_state) AverageParameters();
  if (options_.scheduler != nullptr) options_.scheduler->step();
  tracker_->UpdateEpoch(static_cast<uint64_t>(local_epoch_));
  PublishState();
  LogEpoch(*report);
  loss_sum_ = 0.0;
  loss_count_ = 0;
}

std::vector<float> OptimizerCore::MeanGradients() const {
  std::vector<float> grads(total_, 0.0f);
  if (samples_ > 0) {
    const float inv = 1.0f / static_cast<float>(samples_);
    if (!device_acc_.empty()) {
      staging_.Download(device_acc_, grads.data());
      for (float& g : grads) g *= inv;
    } else {
      for (size_t i = 0; i < total_; ++i) grads[i] = grad_acc_[i] * inv;
    }
  }
  return grads;
}

void OptimizerCore::ResetAccumulator() {
  std::fill(grad_acc_.begin(), grad_acc_.end(), 0.0f);
  torch::NoGradGuard no_grad;
  for (torch::Tensor& t : device_acc_) t.zero_();
  samples_ = 0;
}

void OptimizerCore::ApplyGradients(const std::vector<float>& grads) {
  if (auxiliary()) return;
  std::vector<torch::Tensor> targets;
  for (torch::Tensor& p : params_) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    targets.push_back(p.mutable_grad());
  }
  staging_.Upload(grads.data(), targets);
  InnerStep();
}

void OptimizerCore::InnerStep() {
  absl::Status stepped = inner_->Step();
  if (!stepped.ok()) {
    HIVEMIND_LOG(kError, "the inner optimizer's step failed: ", stepped.ToString());
  }
}

void OptimizerCore::ApplyAveragedGradients(OptimizerStepReport* report) {
  std::vector<float> grads = MeanGradients();
  report->averaging_status =
      Average(*grad_averager_, grads, static_cast<float>(samples_), &report->group_size);
  LogRound("gradients", local_epoch_, report->averaging_status, report->group_size);
  ResyncIfOthersAveraged(report->averaging_status);
  // Averaging failed entirely: `grads` still holds the local mean gradient.
  ApplyGradients(grads);
}

void OptimizerCore::ResyncIfOthersAveraged(const absl::Status& round) {
  if (round.ok() || absl::IsCancelled(round) || auxiliary() || local_updates()) return;
  // A state comes whole from one donor (parameters and the inner optimizer's
  // statistics), which may be Byzantine: a swarm that defends against those does not
  // fetch one more often than a peer behind must; the next parameter round pulls
  // this peer back robustly. (bench/poisoning.sh, noise, with the reload: the swarm
  // lost 7-8 pp in 2 runs of 4; an honest peer that loads the Byzantine's state gets
  // its Adam statistics too, second moments of noise.)
  if (options_.aggregation.method == Aggregation::kCenteredClip) return;
  if (!OthersTrain()) return;
  resync_ = true;
  last_epoch_failed_ = true;
}

bool OptimizerCore::OthersTrain() const {
  const GlobalProgress global = tracker_->global_progress();
  // Others that hold state: trainers, this peer not included.
  return global.num_peers - global.num_clients -
             (options_.mode == MemberMode::kClient ? 0 : 1) >=
         1;
}

absl::Status OptimizerCore::Finish(absl::Duration window) {
  const absl::Time end = absl::Now() + window;
  absl::Status status = absl::OkStatus();
  if (last_epoch_failed_ && !auxiliary()) {
    status = LoadStateFromPeers(window, local_epoch_);
    HIVEMIND_LOG(kInfo, "run end: the last epoch's round failed; ",
                 status.ok() ? "loaded the swarm's state" : status.ToString());
  }
  // Meanwhile the state server goes on serving this peer's state to stragglers.
  absl::SleepFor(end - absl::Now());
  return status;
}

void OptimizerCore::StartDelayedRound(OptimizerStepReport* report) {
  if (pending_) FinishDelayedRound(report);  // at the latest now
  std::vector<float> grads = MeanGradients();
  StepHandle step = StartAveraging(*grad_averager_, grads, static_cast<float>(samples_));
  pending_ = Pending{step, std::move(grads), local_epoch_};
}

void OptimizerCore::FinishDelayedRound(OptimizerStepReport* report) {
  Pending pending = *std::move(pending_);
  pending_.reset();
  report->averaging_status =
      FinishAveraging(*grad_averager_, pending.step, pending.grads, &report->group_size);
  LogRound("gradients", pending.epoch, report->averaging_status, report->group_size);
  ApplyGradients(pending.grads);
}

void OptimizerCore::ApplyDiLoCo(OptimizerStepReport* report) {
  std::vector<float> params = FlatParameters();
  std::vector<float> pseudo(total_);
  for (size_t i = 0; i < total_; ++i) pseudo[i] = anchor_[i] - params[i];
  report->averaging_status =
      Average(*grad_averager_, pseudo, static_cast<float>(samples_), &report->group_size);
  LogRound("outer gradients", local_epoch_, report->averaging_status, report->group_size);
  const float lr = static_cast<float>(options_.diloco_outer_lr);
  const float mu = static_cast<float>(options_.diloco_outer_momentum);
  for (size_t i = 0; i < total_; ++i) {  // Nesterov SGD on the anchor
    momentum_[i] = mu * momentum_[i] + pseudo[i];
    anchor_[i] -= lr * (pseudo[i] + mu * momentum_[i]);
  }
  if (!auxiliary()) SetParameters(anchor_);
}

std::vector<torch::Tensor> OptimizerCore::StartStatistics(
    std::vector<float>* flat, std::optional<StepHandle>* step) {
  std::vector<torch::Tensor> stats = inner_->Statistics();
  std::vector<size_t> sizes;
  for (const torch::Tensor& t : stats) {
    if (t.scalar_type() != torch::kFloat || !t.is_contiguous()) {
      return {};
    }
    sizes.push_back(static_cast<size_t>(t.numel()));
  }
  if (stats.empty()) return {};
  if (!stats_averager_) {
    auto made = MakeAverager("stats", sizes, options_.state_codec, false);
    if (!made.ok()) {
      HIVEMIND_LOG(kWarning,
                   "cannot average optimizer statistics: ", made.status().ToString());
      return {};
    }
    stats_averager_ = *std::move(made);
  }
  if (stats_averager_->LockTensors().sizes() != sizes) return {};  // changed shape
  flat->resize(std::accumulate(sizes.begin(), sizes.end(), size_t{0}));
  staging_.Download(stats, flat->data());
  step->emplace(StartAveraging(*stats_averager_, *flat, 1.0f));
  return stats;
}

void OptimizerCore::AverageParameters() {
  std::vector<float> params = FlatParameters();
  std::vector<float> flat_stats;
  std::optional<StepHandle> stats_step;
  std::vector<torch::Tensor> stats = auxiliary()
                                         ? std::vector<torch::Tensor>{}
                                         : StartStatistics(&flat_stats, &stats_step);
  int group_size = 1;
  absl::Status status = Average(*state_averager_, params, 1.0f, &group_size);
  LogRound("parameters", local_epoch_, status, group_size);
  ResyncIfOthersAveraged(status);
  if (!auxiliary() && group_size > 1) SetParameters(params);
  if (stats.empty() || !stats_step) return;
  int stats_group_size = 1;
  FinishAveraging(*stats_averager_, *stats_step, flat_stats, &stats_group_size)
      .IgnoreError();  // a failed round leaves the local statistics
  if (stats_group_size > 1) staging_.Upload(flat_stats.data(), stats);
}

std::vector<float> OptimizerCore::FlatParameters() const {
  std::vector<float> flat(total_);
  staging_.Download(params_, flat.data());
  return flat;
}

void OptimizerCore::SetParameters(const std::vector<float>& flat) {
  staging_.Upload(flat.data(), params_);
}

std::string OptimizerCore::Schema() const {
  return absl::StrCat("hivemind.optimizer.v1 schema=", TensorSchemaHash(sizes_));
}

absl::StatusOr<PeerState> OptimizerCore::CurrentState() const {
  PeerState state;
  state.epoch = local_epoch_;
  state.metadata = Schema();
  state.values = FlatParameters();
  HIVEMIND_ASSIGN_OR_RETURN(state.extra, inner_->SaveState());
  return state;
}

absl::Status OptimizerCore::ApplyState(const PeerState& state) {
  if (state.metadata != Schema() || state.values.size() != total_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the state is of another model: '", state.metadata, "' with ",
        state.values.size(), " values; this model is '", Schema(), "' with ", total_));
  }
  HIVEMIND_RETURN_IF_ERROR(inner_->LoadState(state.extra));
  SetParameters(state.values);
  pending_.reset();
  local_epoch_ = state.epoch;
  ResetAccumulator();
  if (!anchor_.empty()) anchor_ = state.values;
  tracker_->UpdateEpoch(static_cast<uint64_t>(local_epoch_));
  return absl::OkStatus();
}

void OptimizerCore::PublishState() {
  if (!state_server_ || auxiliary()) return;
  absl::StatusOr<PeerState> state = CurrentState();
  // Publish only snapshots: the server's thread stores the advert (and logs a
  // failed store), so a slow DHT never stalls the step.
  absl::Status published = state.ok() ? state_server_->Publish(*state) : state.status();
  if (!published.ok()) {
    HIVEMIND_LOG(kWarning, "could not serve the state: ", published.ToString());
  }
}

absl::Status OptimizerCore::LoadStateFromPeers(std::optional<absl::Duration> timeout,
                                               int64_t min_epoch) {
  LoadStateOptions load;
  load.min_epoch = min_epoch;
  load.prefix = absl::StrCat(options_.run_id, ".state");
  load.max_donors = options_.load_state_max_donors;
  load.min_agreeing_donors = options_.load_state_min_agreeing_donors;
  load.timeout = timeout.value_or(options_.load_state_timeout);
  LoadStateReport report;
  HIVEMIND_ASSIGN_OR_RETURN(
      PeerState state,
      hivemind::LoadStateFromPeers(state_averager_->endpoint(), dht_, load, &report));
  HIVEMIND_RETURN_IF_ERROR(ApplyState(state));
  HIVEMIND_LOG(kInfo, "loaded the state of epoch ", state.epoch, " (", report.state_bytes,
               " bytes) from ", report.donors.size(), " donor(s)");
  PublishState();
  return absl::OkStatus();
}

absl::Status OptimizerCore::SaveCheckpoint(const std::string& path) {
  HIVEMIND_ASSIGN_OR_RETURN(PeerState state, CurrentState());
  const std::string blob = SerializePeerState(state);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", tmp));
    out.write(blob.data(), static_cast<std::streamsize>(blob.size()));
    if (!out) return absl::DataLossError(absl::StrCat("short write to ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

absl::Status OptimizerCore::LoadCheckpoint(const std::string& path) {
  HIVEMIND_ASSIGN_OR_RETURN(std::string blob, ReadFile(path));
  HIVEMIND_ASSIGN_OR_RETURN(PeerState state, ParsePeerState(blob));
  HIVEMIND_RETURN_IF_ERROR(ApplyState(state));
  PublishState();
  return absl::OkStatus();
}

void OptimizerCore::LogRound(absl::string_view what, int64_t epoch,
                             const absl::Status& status, int group_size) {
  if (status.ok()) {
    HIVEMIND_LOG(kInfo, "epoch ", epoch, ": finished averaging ", what, " with ",
                 group_size, " peer(s)");
  } else {
    HIVEMIND_LOG(kWarning, "epoch ", epoch, ": averaging ", what, " failed (",
                 status.ToString(), "); going on with local values");
  }
}

void OptimizerCore::LogEpoch(const OptimizerStepReport& report) {
  if (options_.progress_log.empty()) return;
  std::ofstream out(options_.progress_log, std::ios::app);
  const GlobalProgress global = tracker_->global_progress();
  const std::string loss =
      loss_count_ > 0
          ? absl::StrFormat("%.6f", loss_sum_ / static_cast<double>(loss_count_))
          : "null";
  out << absl::StrFormat(
      "{\"time\":%.3f,\"peer\":\"%s\",\"epoch\":%d,\"loss\":%s,"
      "\"samples_per_second\":%.1f,\"peers\":%d,\"averaged\":%s,\"group_size\":%d}\n",
      absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()), ShortId(id()), local_epoch_,
      loss, global.samples_per_second, global.num_peers,
      report.averaging_status.ok() ? "true" : "false", report.group_size);
}

class TorchInnerOptimizer : public InnerOptimizer {
 public:
  explicit TorchInnerOptimizer(std::unique_ptr<torch::optim::Optimizer> optimizer)
      : optimizer_(std::move(optimizer)) {}

  absl::Status Step() override {
    try {
      optimizer_->step();
    } catch (const c10::Error& e) {
      return absl::InternalError(e.what_without_backtrace());
    }
    return absl::OkStatus();
  }
  void ZeroGrad() override { optimizer_->zero_grad(); }

  absl::StatusOr<std::string> SaveState() override {
    torch::serialize::OutputArchive archive;
    optimizer_->save(archive);
    std::ostringstream out;
    archive.save_to(out);
    return out.str();
  }

  absl::Status LoadState(const std::string& bytes) override {
    try {
      torch::serialize::InputArchive archive;
      std::istringstream in(bytes);
      archive.load_from(in);
      optimizer_->load(archive);
    } catch (const c10::Error& e) {
      return absl::DataLossError(
          absl::StrCat("cannot read the optimizer state: ", e.what_without_backtrace()));
    }
    return absl::OkStatus();
  }

  std::vector<torch::Tensor> Statistics() override {
    std::vector<torch::Tensor> out;
    auto add = [&out](const torch::Tensor& t) {
      if (t.defined()) out.push_back(t);
    };
    for (const torch::optim::OptimizerParamGroup& group : optimizer_->param_groups()) {
      for (const torch::Tensor& p : group.params()) {
        auto it = FindParamState(optimizer_->state(), p);
        if (it == optimizer_->state().end()) continue;
        torch::optim::OptimizerParamState* state = it->second.get();
        if (auto* adam = dynamic_cast<torch::optim::AdamParamState*>(state)) {
          add(adam->exp_avg());
          add(adam->exp_avg_sq());
          add(adam->max_exp_avg_sq());
        } else if (auto* adamw = dynamic_cast<torch::optim::AdamWParamState*>(state)) {
          add(adamw->exp_avg());
          add(adamw->exp_avg_sq());
          add(adamw->max_exp_avg_sq());
        } else if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(state)) {
          add(sgd->momentum_buffer());
        } else if (auto* rms = dynamic_cast<torch::optim::RMSpropParamState*>(state)) {
          add(rms->square_avg());
          add(rms->momentum_buffer());
          add(rms->grad_avg());
        } else if (auto* ada = dynamic_cast<torch::optim::AdagradParamState*>(state)) {
          add(ada->sum());
        }
      }
    }
    return out;
  }

 private:
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
};

}  // namespace internal

std::unique_ptr<InnerOptimizer> WrapTorchOptimizer(
    std::unique_ptr<torch::optim::Optimizer> optimizer) {
  return std::make_unique<internal::TorchInnerOptimizer>(std::move(optimizer));
}

absl::StatusOr<std::unique_ptr<DecentralizedOptimizer>> DecentralizedOptimizer::Create(
    Dht* dht, std::vector<torch::Tensor> params,
    std::unique_ptr<torch::optim::Optimizer> inner, OptimizerOptions options) {
  if (inner == nullptr)
    return absl::InvalidArgumentError("an inner optimizer is required");
  return Create(dht, std::move(params), WrapTorchOptimizer(std::move(inner)),
                std::move(options));
}

absl::StatusOr<std::unique_ptr<DecentralizedOptimizer>> DecentralizedOptimizer::Create(
    Dht* dht, std::vector<torch::Tensor> params, std::unique_ptr<InnerOptimizer> inner,
    OptimizerOptions options) {
  if (dht == nullptr || inner == nullptr) {
    return absl::InvalidArgumentError("a DHT and an inner optimizer are required");
  }
  HIVEMIND_RETURN_IF_ERROR(internal::ValidateOptions(options));
  HIVEMIND_RETURN_IF_ERROR(internal::ValidateParams(params));
  auto core = std::make_unique<internal::OptimizerCore>(
      dht, std::move(params), std::move(inner), std::move(options));
  HIVEMIND_RETURN_IF_ERROR(core->Start());
  return std::unique_ptr<DecentralizedOptimizer>(
      new DecentralizedOptimizer(std::move(core)));
}

DecentralizedOptimizer::DecentralizedOptimizer(
    std::unique_ptr<internal::OptimizerCore> core)
    : core_(std::move(core)) {}

DecentralizedOptimizer::~DecentralizedOptimizer() { Shutdown(); }

absl::StatusOr<OptimizerStepReport> DecentralizedOptimizer::Step(int64_t batch_size,
                                                                 double loss) {
  return core_->Step(batch_size, loss);
}

void DecentralizedOptimizer::ZeroGrad() { core_->ZeroGrad(); }
absl::Status DecentralizedOptimizer::LoadStateFromPeers() {
  return core_->LoadStateFromPeers();
}
absl::Status DecentralizedOptimizer::SaveCheckpoint(const std::string& path) {
  return core_->SaveCheckpoint(path);
}
absl::Status DecentralizedOptimizer::LoadCheckpoint(const std::string& path) {
  return core_->LoadCheckpoint(path);
}
int64_t DecentralizedOptimizer::local_epoch() const { return core_->local_epoch(); }
OptimizerStats DecentralizedOptimizer::stats() const { return core_->stats(); }
GlobalProgress DecentralizedOptimizer::global_progress() const {
  return core_->global_progress();
}
InnerOptimizer& DecentralizedOptimizer::inner() { return core_->inner(); }
const PeerId& DecentralizedOptimizer::id() const { return core_->id(); }
absl::Status DecentralizedOptimizer::Finish(absl::Duration window) {
  return core_->Finish(window);
}

void DecentralizedOptimizer::Shutdown() { core_->Shutdown(); }

}  // namespace hivemind
