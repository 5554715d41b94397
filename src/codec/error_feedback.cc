#include "hivemind/codec/error_feedback.h"

#include "absl/strings/str_cat.h"
#include "util/status_macros.h"

namespace hivemind {

ErrorFeedback::ErrorFeedback(const Codec* codec) : codec_(codec) {}

absl::Status ErrorFeedback::Encode(absl::Span<const float> values, std::string* out,
                                   const EncodeOptions& options) {
  if (residual_.empty()) residual_.assign(values.size(), 0.0f);
  if (values.size() != residual_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("error feedback buffer has ",
                                                   residual_.size(), " elements, got ",
                                                   values.size()));
  }
  corrected_.resize(values.size());
  for (size_t i = 0; i < values.size(); ++i) corrected_[i] = values[i] + residual_[i];
  HIVEMIND_RETURN_IF_ERROR(codec_->Encode(corrected_, out, options));
  // residual = corrected - decoded, computed in place: decode with weight -1 into
  // the corrected values.
  HIVEMIND_RETURN_IF_ERROR(DecodeAdd(*out, -1.0f, absl::MakeSpan(corrected_)));
  residual_.swap(corrected_);
  return absl::OkStatus();
}

void ErrorFeedback::Reset() {
  residual_.clear();
  corrected_.clear();
}

}  // namespace hivemind
