// Choosing a codec per tensor: by size (small tensors are cheap to send exactly and
// suffer most from quantization) or by role (gradients tolerate more loss than
// parameters). The equivalents of hivemind's SizeAdaptiveCompression and
// RoleAdaptiveCompression; callers always pass the tensor's real role (hivemind's
// defect of gradients arriving as "unspecified" is not repeated here).
#ifndef HIVEMIND_CODEC_SELECTOR_H_
#define HIVEMIND_CODEC_SELECTOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "hivemind/codec/codec.h"
#include "hivemind/export.h"

namespace hivemind {

// What a tensor is used for. Do not renumber.
enum class TensorRole : uint8_t {
  kUnspecified = 0,
  kGradient = 1,
  kParameter = 2,
  kOptimizerState = 3,
};

// What a selector may look at.
struct HIVEMIND_EXPORT TensorDescriptor {
  size_t numel = 0;
  TensorRole role = TensorRole::kUnspecified;
};

// Picks the codec for a tensor.
//
// Thread safety: immutable after construction; Select may be called concurrently.
class HIVEMIND_EXPORT CodecSelector {
 public:
  virtual ~CodecSelector() = default;

  // The codec for `tensor`; owned by the selector, valid as long as it lives.
  virtual const Codec& Select(const TensorDescriptor& tensor) const = 0;
};

// Always `codec`.
HIVEMIND_EXPORT std::unique_ptr<CodecSelector> FixedCodecSelector(
    std::unique_ptr<Codec> codec);

// `small` for tensors of fewer than `threshold` elements, else `large`.
HIVEMIND_EXPORT std::unique_ptr<CodecSelector> SizeAdaptiveSelector(
    size_t threshold, std::unique_ptr<Codec> small, std::unique_ptr<Codec> large);

// One selector per role; kUnspecified (and any role without its own) uses `other`.
// Null arguments fall back to `other`, which must not be null.
struct HIVEMIND_EXPORT RoleSelectors {
  std::unique_ptr<CodecSelector> gradient;
  std::unique_ptr<CodecSelector> parameter;
  std::unique_ptr<CodecSelector> optimizer_state;
  std::unique_ptr<CodecSelector> other;
};
HIVEMIND_EXPORT std::unique_ptr<CodecSelector> RoleAdaptiveSelector(
    RoleSelectors selectors);

}  // namespace hivemind

#endif  // HIVEMIND_CODEC_SELECTOR_H_
