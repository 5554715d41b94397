#include "optim/optimizer_core.h"

#include <cmath>
#include <fstream>
#include <numeric>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "hivemind/util/logging.h"
#include "util/status_macros.h"

namespace hivemind {
namespace internal {
namespace {

// Downloads tried in a row when the donors' state changes mid-download.
constexpr int kLoadAttempts = 3;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream data;
  data << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return data.str();
}

}  // namespace

OptimizerCore::OptimizerCore(Dht* dht, std::vector<torch::Tensor> params,
                             std::unique_ptr<InnerOptimizer> inner,
                             OptimizerOptions options)
    : dht_(dht),
      inner_(std::move(inner)),
      options_(std::move(options)),
      model_(std::move(params), AccumulatesGradients(options_)),
      rounds_(options_, &stats_) {}

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
  HIVEMIND_ASSIGN_OR_RETURN(grad_averager_,
                            MakeAverager("grads", model_.sizes(), options_.grad_codec,
                                         options_.grad_error_feedback));
  HIVEMIND_ASSIGN_OR_RETURN(state_averager_, MakeAverager("params", model_.sizes(),
                                                          options_.state_codec, false));
  if (!options_.endpoint.client_mode) {
    StateServerOptions s;
    s.prefix = absl::StrCat(options_.run_id, ".state");
    s.zstd_level = options_.state_load_zstd_level;
    HIVEMIND_ASSIGN_OR_RETURN(state_server_,
                              StateServer::Create(state_averager_->endpoint(), dht_, s));
  }
  policy_ = MakeEpochPolicy(
      EpochContext{options_, model_, *inner_, rounds_, *grad_averager_, auxiliary()});
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
  const uint64_t swarm_epoch = tracker_->global_progress().epoch;
  if (auxiliary()) {
    if (!AuxiliaryReady(swarm_epoch)) {
      report.epoch = local_epoch_;
      return report;
    }
  } else {
    const CatchUp::Plan plan = catch_up_.Next(
        swarm_epoch, local_epoch_, policy_->allowed_lag(), policy_->round_in_flight());
    if (plan.load != CatchUp::Load::kNone) {
      CatchUpWithSwarm(plan, swarm_epoch, &report);
      report.epoch = local_epoch_;
      return report;
    }
    HIVEMIND_RETURN_IF_ERROR(TrainOn(batch_size, loss, &report));
  }
  if (tracker_->ready_to_update_epoch()) EndEpoch(&report);
  report.epoch = local_epoch_;
  return report;
}

void OptimizerCore::CatchUpWithSwarm(const CatchUp::Plan& plan, uint64_t swarm_epoch,
                                     OptimizerStepReport* report) {
  // Behind the swarm: the round of this epoch is over; catch up instead. A peer
  // that only missed a round (resync) gives the download no longer than a round:
  // the donors it sees may be gone, and it can train on meanwhile.
  policy_->DropRound();
  const bool resync = plan.load == CatchUp::Load::kResync;
  const std::optional<absl::Duration> timeout =
      resync ? std::optional<absl::Duration>(options_.averaging_timeout) : std::nullopt;
  const absl::Time start = absl::Now();
  absl::Status loaded = LoadStateFromPeers(timeout, plan.min_epoch);
  // "State changed": the donors moved to a newer state mid-download; that one is
  // what to fetch now.
  for (int attempt = 1; attempt < kLoadAttempts && absl::IsFailedPrecondition(loaded);
       ++attempt) {
    loaded = LoadStateFromPeers(timeout, plan.min_epoch);
  }
  stats_.wait_time += absl::Now() - start;
  report->loaded_state = loaded.ok();
  const std::optional<int64_t> jump = catch_up_.Loaded(
      plan, loaded.ok(), swarm_epoch, local_epoch_, policy_->allowed_lag());
  if (!loaded.ok() && resync) {
    HIVEMIND_LOG(kWarning, "could not load state from peers after a missed round (",
                 loaded.ToString(), "); going on with local parameters");
  } else if (!loaded.ok()) {
    HIVEMIND_LOG(kWarning, "could not load state from peers (", loaded.ToString(),
                 "); jumping to the swarm's epoch with local parameters, trying "
                 "again at the next epoch");
  }
  // The donors' state may be older than the swarm's epoch (they are behind too, or
  // this peer's view of the swarm is): train on from it at the swarm's epoch and
  // look for a newer state at the next one, rather than load it at every step.
  if (jump) JumpTo(*jump);
}

bool OptimizerCore::AuxiliaryReady(uint64_t swarm_epoch) {
  // An auxiliary peer holds no state of its own: it follows the swarm's epoch and
  // joins a round once trainers have gathered samples toward it.
  if (swarm_epoch > static_cast<uint64_t>(local_epoch_)) {
    JumpTo(static_cast<int64_t>(swarm_epoch));
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
  return tracker_->EstimatedTimeToNextEpoch() <= ahead &&
         global.epoch == static_cast<uint64_t>(local_epoch_) &&
         global.samples_accumulated > 0;
}

absl::Status OptimizerCore::TrainOn(int64_t batch_size, double loss,
                                    OptimizerStepReport* report) {
  if (batch_size <= 0) batch_size = options_.batch_size_per_step;
  if (batch_size <= 0) return absl::InvalidArgumentError("batch size must be positive");
  HIVEMIND_ASSIGN_OR_RETURN(std::vector<torch::Tensor> grads, model_.FiniteGradients());
  policy_->OnBatch(grads, batch_size);
  samples_ += batch_size;
  policy_->Poll(report);
  if (std::isfinite(loss)) {
    loss_sum_ += loss;
    ++loss_count_;
  }
  tracker_->ReportLocalProgress(static_cast<uint64_t>(local_epoch_),
                                static_cast<uint64_t>(samples_));
  return absl::OkStatus();
}

void OptimizerCore::StartAccumulating() {
  model_.ResetAccumulator();
  samples_ = 0;
}

void OptimizerCore::EndEpoch(OptimizerStepReport* report) {
  report->epoch_advanced = true;
  // The state served so far is stale from now on (loaders want this epoch's end):
  // free it before the rounds need their buffers. PublishState serves the new one.
  if (state_server_) state_server_->Withdraw();
  catch_up_.EpochEnded();
  NoteRound(policy_->EndEpoch(EpochEnd{local_epoch_, samples_}, report));
  StartAccumulating();
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
  ReportEpoch(*report);
  loss_sum_ = 0.0;
  loss_count_ = 0;
}

void OptimizerCore::JumpTo(int64_t epoch) {
  local_epoch_ = epoch;
  tracker_->UpdateEpoch(static_cast<uint64_t>(epoch));
}

void OptimizerCore::NoteRound(const absl::Status& round) {
  if (round.ok() || absl::IsCancelled(round) || auxiliary() ||
      !policy_->resyncs_after_failed_round()) {
    return;
  }
  // A state comes whole from one donor (parameters and the inner optimizer's
  // statistics), which may be Byzantine: a swarm that defends against those does not
  // fetch one more often than a peer behind must; the next parameter round pulls
  // this peer back robustly. (bench/poisoning.sh, noise, with the reload: the swarm
  // lost 7-8 pp in 2 runs of 4; an honest peer that loads the Byzantine's state gets
  // its Adam statistics too, second moments of noise.)
  if (options_.aggregation.method == Aggregation::kCenteredClip) return;
  if (OthersTrain()) catch_up_.RoundFailed();
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
  if (catch_up_.last_epoch_failed() && !auxiliary()) {
    status = LoadStateFromPeers(window, local_epoch_);
    HIVEMIND_LOG(kInfo, "run end: the last epoch's round failed; ",
                 status.ok() ? "loaded the swarm's state" : status.ToString());
  }
  // Meanwhile the state server goes on serving this peer's state to stragglers.
  absl::SleepFor(end - absl::Now());
  return status;
}

std::vector<torch::Tensor> OptimizerCore::StartStatistics(
    std::vector<float>* flat, std::optional<StepHandle>* step) {
  std::vector<torch::Tensor> stats = inner_->Statistics();
  std::vector<size_t> sizes;
  for (const torch::Tensor& t : stats) {
    if (t.scalar_type() != torch::kFloat || !t.is_contiguous()) return {};
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
  if (stats_averager_->tensor_sizes() != sizes) return {};  // changed shape
  flat->resize(std::accumulate(sizes.begin(), sizes.end(), size_t{0}));
  model_.Download(stats, flat->data());
  step->emplace(
      rounds_.Start(*stats_averager_, absl::MakeSpan(*flat), 1.0f, local_epoch_));
  return stats;
}

void OptimizerCore::AverageParameters() {
  std::vector<float> params = model_.FlatParameters();
  std::vector<float> flat_stats;
  std::optional<StepHandle> stats_step;
  std::vector<torch::Tensor> stats = auxiliary()
                                         ? std::vector<torch::Tensor>{}
                                         : StartStatistics(&flat_stats, &stats_step);
  int group_size = 1;
  absl::Status status = rounds_.Average(*state_averager_, absl::MakeSpan(params), 1.0f,
                                        local_epoch_, &group_size);
  EpochRounds::Log("parameters", local_epoch_, status, group_size);
  NoteRound(status);
  if (!auxiliary() && group_size > 1) model_.SetParameters(params);
  if (stats.empty() || !stats_step) return;
  int stats_group_size = 1;
  rounds_.Finish(*stats_step, &stats_group_size)
      .IgnoreError();  // a failed round leaves the local statistics
  if (stats_group_size > 1) model_.Upload(flat_stats.data(), stats);
}

std::string OptimizerCore::Schema() const {
  return absl::StrCat("hivemind.optimizer.v1 schema=", TensorSchemaHash(model_.sizes()));
}

absl::StatusOr<PeerState> OptimizerCore::CurrentState() const {
  PeerState state;
  state.epoch = local_epoch_;
  state.metadata = Schema();
  state.values = model_.FlatParameters();
  HIVEMIND_ASSIGN_OR_RETURN(state.extra, inner_->SaveState());
  return state;
}

absl::Status OptimizerCore::ApplyState(const PeerState& state) {
  if (state.metadata != Schema() || state.values.size() != model_.total()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the state is of another model: '", state.metadata, "' with ",
                     state.values.size(), " values; this model is '", Schema(), "' with ",
                     model_.total()));
  }
  HIVEMIND_RETURN_IF_ERROR(inner_->LoadState(state.extra));
  model_.SetParameters(state.values);
  policy_->Rebase(state.values);
  StartAccumulating();
  JumpTo(state.epoch);
  return absl::OkStatus();
}

void OptimizerCore::PublishState() {
  if (!state_server_ || auxiliary()) return;
  absl::StatusOr<PeerState> state = CurrentState();
  // Publish only snapshots: the server's thread stores the advert (and logs a
  // failed store), so a slow DHT never stalls the step.
  absl::Status published =
      state.ok() ? state_server_->Publish(*std::move(state)) : state.status();
  if (!published.ok()) {
    HIVEMIND_LOG(kWarning, "could not serve the state: ", published.ToString());
  }
}

absl::Status OptimizerCore::LoadStateFromPeers(std::optional<absl::Duration> timeout,
                                               int64_t min_epoch) {
  // This peer's own advert first: a lookup while its store of the same key is under
  // way found none of the others' adverts in 2 of 3 runs of
  // OptimizerSwarm.APeerThatMissedARoundLoadsTheStateAtItsNextStep (0 of 4 with
  // this wait; a bare Store beside a Get in dht_test does not show it). Bounded by
  // the server's DHT timeout; it is a download's wait anyway.
  if (state_server_) state_server_->WaitForAdvert().IgnoreError();
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

void OptimizerCore::ReportEpoch(const OptimizerStepReport& report) {
  if (!options_.on_epoch) return;
  const GlobalProgress global = tracker_->global_progress();
  EpochSummary summary;
  summary.time = absl::Now();
  summary.peer = id().substr(0, 8);
  summary.epoch = local_epoch_;
  if (loss_count_ > 0) summary.mean_loss = loss_sum_ / static_cast<double>(loss_count_);
  summary.samples_per_second = global.samples_per_second;
  summary.num_peers = global.num_peers;
  summary.averaging_status = report.averaging_status;
  summary.group_size = report.group_size;
  options_.on_epoch(summary);
}

}  // namespace internal
}  // namespace hivemind
