// The adapter of libtorch optimizers (WrapTorchOptimizer): steps, state bytes as
// torch::serialize archives, and the statistics buffers of the optimizers libtorch
// ships.
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/archive.h>

#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "hivemind/optim/optimizer.h"

namespace hivemind {
namespace {

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
    // Written straight into one string reserved for the statistics and a margin
    // for the archive's records: an ostringstream would grow by doubling and then
    // be copied out (about three times the statistics at the peak, not one).
    size_t bytes = size_t{1} << 16;
    for (const torch::Tensor& t : Statistics()) bytes += t.nbytes() + 4096;
    std::string out;
    out.reserve(bytes);
    archive.save_to([&out](const void* data, size_t size) {
      out.append(static_cast<const char*>(data), size);
      return size;
    });
    return out;
  }

  absl::Status LoadState(const std::string& bytes) override {
    try {
      torch::serialize::InputArchive archive;
      archive.load_from(bytes.data(), bytes.size());  // read in place, not copied
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

}  // namespace

std::unique_ptr<InnerOptimizer> WrapTorchOptimizer(
    std::unique_ptr<torch::optim::Optimizer> optimizer) {
  return std::make_unique<TorchInnerOptimizer>(std::move(optimizer));
}

}  // namespace hivemind
