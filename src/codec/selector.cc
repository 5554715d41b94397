#include "hivemind/codec/selector.h"

#include <cassert>
#include <utility>

namespace hivemind {
namespace {

class Fixed final : public CodecSelector {
 public:
  explicit Fixed(std::unique_ptr<Codec> codec) : codec_(std::move(codec)) {}
  const Codec& Select(const TensorDescriptor&) const override { return *codec_; }

 private:
  std::unique_ptr<Codec> codec_;
};

class SizeAdaptive final : public CodecSelector {
 public:
  SizeAdaptive(size_t threshold, std::unique_ptr<Codec> small,
               std::unique_ptr<Codec> large)
      : threshold_(threshold), small_(std::move(small)), large_(std::move(large)) {}
  const Codec& Select(const TensorDescriptor& tensor) const override {
    return tensor.numel < threshold_ ? *small_ : *large_;
  }

 private:
  size_t threshold_;
  std::unique_ptr<Codec> small_;
  std::unique_ptr<Codec> large_;
};

class RoleAdaptive final : public CodecSelector {
 public:
  explicit RoleAdaptive(RoleSelectors selectors) : s_(std::move(selectors)) {}
  const Codec& Select(const TensorDescriptor& tensor) const override {
    return ForRole(tensor.role).Select(tensor);
  }

 private:
  const CodecSelector& ForRole(TensorRole role) const {
    const CodecSelector* chosen = nullptr;
    switch (role) {
      case TensorRole::kGradient:
        chosen = s_.gradient.get();
        break;
      case TensorRole::kParameter:
        chosen = s_.parameter.get();
        break;
      case TensorRole::kOptimizerState:
        chosen = s_.optimizer_state.get();
        break;
      case TensorRole::kUnspecified:
        break;
    }
    return chosen != nullptr ? *chosen : *s_.other;
  }

  RoleSelectors s_;
};

}  // namespace

std::unique_ptr<CodecSelector> FixedCodecSelector(std::unique_ptr<Codec> codec) {
  assert(codec != nullptr);
  return std::make_unique<Fixed>(std::move(codec));
}

std::unique_ptr<CodecSelector> SizeAdaptiveSelector(size_t threshold,
                                                    std::unique_ptr<Codec> small,
                                                    std::unique_ptr<Codec> large) {
  assert(small != nullptr && large != nullptr);
  return std::make_unique<SizeAdaptive>(threshold, std::move(small), std::move(large));
}

std::unique_ptr<CodecSelector> RoleAdaptiveSelector(RoleSelectors selectors) {
  assert(selectors.other != nullptr);
  return std::make_unique<RoleAdaptive>(std::move(selectors));
}

}  // namespace hivemind
