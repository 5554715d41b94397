// Building codecs from options or from a short text spec (for flags and configs).
#ifndef HIVEMIND_CODEC_FACTORY_H_
#define HIVEMIND_CODEC_FACTORY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hivemind/codec/codec.h"
#include "hivemind/export.h"

namespace hivemind {

// Returns a codec for `options`, or kInvalidArgument for an unknown id, a block size
// that is not a multiple of 8 in [8, 2^20] (blockwise and scaled fp16 only), or a
// zstd level outside [1, 19] (when zstd is on).
HIVEMIND_EXPORT absl::StatusOr<std::unique_ptr<Codec>> CreateCodec(
    const CodecOptions& options);

// Parses a codec spec: NAME[:KEY=VALUE,...][+zstd[=LEVEL]], where NAME is one of
// none, fp16, bf16, scaled_fp16, uniform8, quantile8, blockwise8, blockwise4,
// blockwise2, and KEY is `block` (block size) or `stochastic` (0 or 1). Examples:
// "blockwise4", "blockwise8:block=2048,stochastic=1", "fp16+zstd=3".
// Returns kInvalidArgument with the offending part named. Does not validate ranges
// (CreateCodec does).
HIVEMIND_EXPORT absl::StatusOr<CodecOptions> ParseCodecSpec(absl::string_view spec);

// The spec string that ParseCodecSpec turns back into `options` (only fields that
// apply to the codec are written).
HIVEMIND_EXPORT std::string CodecSpec(const CodecOptions& options);

// Convenience: ParseCodecSpec then CreateCodec.
HIVEMIND_EXPORT absl::StatusOr<std::unique_ptr<Codec>> CreateCodecFromSpec(
    absl::string_view spec);

}  // namespace hivemind

#endif  // HIVEMIND_CODEC_FACTORY_H_
