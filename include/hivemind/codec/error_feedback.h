// Error feedback: what a lossy codec drops in one round is added to the next round's
// input, so that over many rounds nothing is lost on average. This is the base of the
// AQ-SGD-style compression the averager uses (EF-SGD; Karimireddy et al. 2019).
//
//   ErrorFeedback ef(codec.get());
//   for each round:
//     ef.Encode(gradient, &payload);   // encodes gradient + residual
//     send(payload);
//
// After T rounds the sum of the decoded payloads equals the sum of the inputs minus
// the current residual, and the residual stays bounded by the codec's one-shot error,
// so the mean decoded value converges to the mean input as 1/T.
#ifndef HIVEMIND_CODEC_ERROR_FEEDBACK_H_
#define HIVEMIND_CODEC_ERROR_FEEDBACK_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "hivemind/codec/codec.h"
#include "hivemind/export.h"

namespace hivemind {

// The residual of one buffer (keep one ErrorFeedback per buffer you send).
//
// Thread safety: not thread-safe; use from one thread at a time.
class HIVEMIND_EXPORT ErrorFeedback {
 public:
  // `codec` is not owned and must outlive this object.
  explicit ErrorFeedback(const Codec* codec);

  // Encodes values + residual into `*out` and sets the residual to what the codec
  // lost. The residual starts at zero and takes its size from the first call.
  // Returns kInvalidArgument if values.size() differs from the residual's size, or
  // if values + residual holds a NaN or Inf; on error the residual is unchanged.
  absl::Status Encode(absl::Span<const float> values, std::string* out,
                      const EncodeOptions& options = {});

  // What the codec has lost so far and will add to the next input.
  absl::Span<const float> residual() const { return residual_; }

  // Forgets the residual (for example when the buffer's meaning changes).
  void Reset();

 private:
  const Codec* codec_;
  std::vector<float> residual_;
  std::vector<float> corrected_;  // scratch: values + residual
};

}  // namespace hivemind

#endif  // HIVEMIND_CODEC_ERROR_FEEDBACK_H_
