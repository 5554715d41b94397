#include "optim/epoch_policy.h"

#include <optional>
#include <utility>

#include "hivemind/util/logging.h"

namespace hivemind {
namespace internal {

void EpochPolicy::StepInner() {
  absl::Status stepped = context_.inner.Step();
  if (!stepped.ok()) {
    HIVEMIND_LOG(kError, "the inner optimizer's step failed: ", stepped.ToString());
  }
}

namespace {

class GradientAveraging : public EpochPolicy {
 public:
  using EpochPolicy::EpochPolicy;

  void OnBatch(const std::vector<torch::Tensor>& grads, int64_t batch_size) override {
    context_.model.Accumulate(grads, batch_size);
  }

  absl::Status EndEpoch(const EpochEnd& end, OptimizerStepReport* report) override {
    // Averaged in place in the accumulator, which the core resets afterwards.
    const absl::Span<float> grads = context_.model.MeanGradients(end.samples);
    report->averaging_status =
        context_.rounds.Average(context_.averager, grads, static_cast<float>(end.samples),
                                end.epoch, &report->group_size);
    EpochRounds::Log("gradients", end.epoch, report->averaging_status,
                     report->group_size);
    // A failed round leaves `grads` the local mean gradient.
    Apply(grads);
    return report->averaging_status;
  }

 protected:
  void Apply(absl::Span<const float> grads) {
    if (context_.auxiliary) return;
    context_.model.SetGradients(grads);
    StepInner();
  }
};

class DelayedUpdates : public GradientAveraging {
 public:
  using GradientAveraging::GradientAveraging;

  void Poll(OptimizerStepReport* report) override {
    if (pending_ && pending_->step.done()) Finish(report);
  }

  absl::Status EndEpoch(const EpochEnd& end, OptimizerStepReport* report) override {
    if (pending_) Finish(report);  // at the latest now
    // A copy: the next epoch accumulates while this round runs. Its buffer moves
    // into pending_ with the vector, so the round's view of it stays valid.
    const absl::Span<float> mean = context_.model.MeanGradients(end.samples);
    std::vector<float> grads(mean.begin(), mean.end());
    StepHandle step = context_.rounds.Start(context_.averager, absl::MakeSpan(grads),
                                            static_cast<float>(end.samples), end.epoch);
    pending_ = Pending{std::move(step), std::move(grads), end.epoch};
    return absl::OkStatus();
  }

  // The others advance their epoch when their round starts, so one epoch behind
  // still meets them in that round.
  uint64_t allowed_lag() const override { return 1; }
  bool round_in_flight() const override { return pending_.has_value(); }
  void DropRound() override { pending_.reset(); }

 private:
  struct Pending {
    StepHandle step;
    std::vector<float> grads;  // the local mean gradients, then the average
    int64_t epoch;
  };

  void Finish(OptimizerStepReport* report) {
    Pending pending = *std::move(pending_);
    pending_.reset();
    report->averaging_status = context_.rounds.Finish(pending.step, &report->group_size);
    EpochRounds::Log("gradients", pending.epoch, report->averaging_status,
                     report->group_size);
    Apply(pending.grads);
  }

  std::optional<Pending> pending_;
};

class LocalUpdates : public EpochPolicy {
 public:
  using EpochPolicy::EpochPolicy;

  void OnBatch(const std::vector<torch::Tensor>&, int64_t) override { StepInner(); }
  absl::Status EndEpoch(const EpochEnd&, OptimizerStepReport* report) override {
    report->averaging_status = absl::OkStatus();
    return absl::OkStatus();
  }
  bool resyncs_after_failed_round() const override { return false; }
};

class DiLoCo : public LocalUpdates {
 public:
  explicit DiLoCo(const EpochContext& context)
      : LocalUpdates(context),
        anchor_(context.model.FlatParameters()),
        momentum_(context.model.total(), 0.0f) {}

  absl::Status EndEpoch(const EpochEnd& end, OptimizerStepReport* report) override {
    std::vector<float> pseudo = context_.model.FlatParameters();
    for (size_t i = 0; i < pseudo.size(); ++i) pseudo[i] = anchor_[i] - pseudo[i];
    report->averaging_status = context_.rounds.Average(
        context_.averager, absl::MakeSpan(pseudo), static_cast<float>(end.samples),
        end.epoch, &report->group_size);
    EpochRounds::Log("outer gradients", end.epoch, report->averaging_status,
                     report->group_size);
    const float lr = static_cast<float>(context_.options.diloco_outer_lr);
    const float mu = static_cast<float>(context_.options.diloco_outer_momentum);
    for (size_t i = 0; i < pseudo.size(); ++i) {  // Nesterov SGD on the anchor
      momentum_[i] = mu * momentum_[i] + pseudo[i];
      anchor_[i] -= lr * (pseudo[i] + mu * momentum_[i]);
    }
    if (!context_.auxiliary) context_.model.SetParameters(anchor_);
    return absl::OkStatus();
  }

  void Rebase(const std::vector<float>& params) override { anchor_ = params; }

 private:
  std::vector<float> anchor_;    // the parameters at the start of the epoch
  std::vector<float> momentum_;  // the outer optimizer's
};

}  // namespace

bool AccumulatesGradients(const OptimizerOptions& options) {
  return !options.use_local_updates && options.diloco_outer_lr <= 0.0;
}

std::unique_ptr<EpochPolicy> MakeEpochPolicy(const EpochContext& context) {
  const OptimizerOptions& o = context.options;
  if (o.diloco_outer_lr > 0.0) return std::make_unique<DiLoCo>(context);
  if (o.use_local_updates) return std::make_unique<LocalUpdates>(context);
  if (o.delay_updates) return std::make_unique<DelayedUpdates>(context);
  return std::make_unique<GradientAveraging>(context);
}

}  // namespace internal
}  // namespace hivemind
