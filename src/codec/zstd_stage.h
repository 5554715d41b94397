// The optional lossless zstd stage over a codec's body.
#ifndef HIVEMIND_CODEC_ZSTD_STAGE_H_
#define HIVEMIND_CODEC_ZSTD_STAGE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hivemind {
namespace internal {

// Largest compressed size of `size` input bytes.
size_t ZstdBound(size_t size);

// Compresses src into dst[0..capacity) at `level`; returns the compressed size.
// kInvalidArgument when dst is too small.
absl::StatusOr<size_t> ZstdCompress(absl::string_view src, int level, char* dst,
                                    size_t capacity);

// Decompresses `frame`, which must be exactly one zstd frame that declares and
// expands to exactly `expected_size` bytes, into `*out` (resized). kDataLoss
// otherwise; the size is checked against the frame's declaration before `*out` grows.
absl::Status ZstdExpand(absl::string_view frame, uint64_t expected_size,
                        std::string* out);

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_CODEC_ZSTD_STAGE_H_
