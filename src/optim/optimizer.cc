// DecentralizedOptimizer: validation of its options, and the public face of
// OptimizerCore (optimizer_core.h), where the work is done.
#include "hivemind/optim/optimizer.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "optim/optimizer_core.h"
#include "util/status_macros.h"

namespace hivemind {
namespace internal {
namespace {

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

}  // namespace
}  // namespace internal

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
