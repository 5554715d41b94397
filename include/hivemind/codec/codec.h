// Tensor codecs: a Codec turns a flat float32 buffer into a self-describing byte
// payload; the free functions below turn any payload back into floats, whichever
// codec made it (the payload names its codec, element count and block size).
//
// Non-finite values. Encoders reject NaN and +-Inf in their input with
// kInvalidArgument and write nothing useful. Decoders reject a payload that would
// produce a non-finite value (a NaN scale, an fp16 Inf code, ...) with kDataLoss
// before they touch the destination. So a NaN never crosses the wire through a codec.
//
// Reproducibility. Encoding is deterministic (stochastic rounding draws from a
// counter-based generator seeded by EncodeOptions::seed), and decoding the same bytes
// gives bit-identical floats on every x86-64 machine, whichever SIMD path runs.
//
// The payload layout is described in docs/wire_format.md ("Codec payloads"), and the
// error bound of each codec in docs/codecs.md.
#ifndef HIVEMIND_CODEC_CODEC_H_
#define HIVEMIND_CODEC_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "hivemind/export.h"

namespace hivemind {

// Identifies a codec on the wire. Do not renumber: values are part of the payload
// format. Append new codecs at the end.
enum class CodecId : uint8_t {
  kNone = 0,           // raw float32
  kFloat16 = 1,        // IEEE half precision, clamped to +-65504
  kBFloat16 = 2,       // bfloat16, round to nearest even
  kScaledFloat16 = 3,  // per-block mean and scale, fp16 of the normalized values
  kUniform8Bit = 4,    // 256 bins of width 6*sigma/256 around the mean, bin means
  kQuantile8Bit = 5,   // 256 bins between data quantiles, bin means
  kBlockwise8Bit = 6,  // per-block absmax scale, 255 levels
  kBlockwise4Bit = 7,  // per-block absmax scale, 15 levels
  kBlockwise2Bit = 8,  // per-block absmax scale, 4 levels
};
inline constexpr int kNumCodecIds = 9;

// Returns the short name used in codec specs ("none", "fp16", "blockwise4", ...), or
// "unknown" for a value outside CodecId.
HIVEMIND_EXPORT absl::string_view CodecName(CodecId id);

// How a codec is built. Fields that do not apply to a codec are ignored by it.
struct HIVEMIND_EXPORT CodecOptions {
  CodecId id = CodecId::kNone;

  // Elements per block for the blockwise codecs and scaled fp16. Must be a multiple
  // of 8 in [8, 1 << 20]. Default: 4096.
  uint32_t block_size = 4096;

  // Blockwise codecs: round to a neighbouring level at random, with probabilities
  // that make the decoded value unbiased, instead of to the nearest level.
  // Default: false.
  bool stochastic_rounding = false;

  // Compress the encoded body with zstd (lossless). Worth it for quantized codes of
  // smooth data; rarely for raw floats. Default: false.
  bool zstd = false;

  // zstd compression level, 1 (fastest) to 19. Default: 1.
  int zstd_level = 1;
};

// Per-call encoding options.
struct HIVEMIND_EXPORT EncodeOptions {
  // Seed of the stochastic rounding generator. Use a different seed per round (for
  // example the round number) so that rounding noise does not repeat. Default: 0.
  uint64_t seed = 0;
};

// What a payload says about itself. Read by ReadPayloadInfo without decoding.
struct HIVEMIND_EXPORT PayloadInfo {
  CodecId codec = CodecId::kNone;
  bool zstd = false;
  uint32_t block_size = 0;  // 0 for codecs without blocks
  uint64_t count = 0;       // number of float32 elements encoded
};

// Size of the header that starts every payload.
inline constexpr size_t kPayloadHeaderSize = 16;

// Most elements one payload may hold (2^34). Larger counts are rejected as corrupt.
inline constexpr uint64_t kMaxPayloadElements = uint64_t{1} << 34;

// Encodes float32 buffers. Create one with CreateCodec (hivemind/codec/factory.h).
//
// Thread safety: a Codec is immutable after construction; Encode may be called from
// any number of threads at once.
class HIVEMIND_EXPORT Codec {
 public:
  virtual ~Codec() = default;

  // The options this codec was built with.
  virtual const CodecOptions& options() const = 0;

  // An upper bound on the payload size for `count` elements (header included). A
  // buffer of this size is always large enough for Encode.
  virtual size_t MaxEncodedSize(size_t count) const = 0;

  // Encodes `values` into `out` and returns the number of bytes written.
  // Returns kInvalidArgument if `values` holds a NaN or Inf, if it holds more than
  // kMaxPayloadElements elements, or if `out` is smaller than the payload (use
  // MaxEncodedSize). On error the content of `out` is unspecified.
  virtual absl::StatusOr<size_t> Encode(absl::Span<const float> values,
                                        absl::Span<char> out,
                                        const EncodeOptions& options = {}) const = 0;

  // Convenience: encodes into `*out`, resized to the payload's exact size.
  // Same errors as above.
  absl::Status Encode(absl::Span<const float> values, std::string* out,
                      const EncodeOptions& options = {}) const;

 protected:
  Codec() = default;
};

// Parses and validates a payload's header. Returns kDataLoss if the payload is
// shorter than its header, names an unknown codec, has reserved bits set, an invalid
// block size, or an element count over kMaxPayloadElements. Does not check the body.
HIVEMIND_EXPORT absl::StatusOr<PayloadInfo> ReadPayloadInfo(absl::string_view payload);

// Decodes `payload` into `out`, which must hold exactly the payload's element count.
// Returns kInvalidArgument if out.size() differs from the count, kDataLoss if the
// payload is malformed: header errors as above, a body shorter or longer than its
// header implies, a zstd body that does not decompress to exactly that size, or
// content that decodes to NaN or Inf. On error `out` is left untouched.
HIVEMIND_EXPORT absl::Status Decode(absl::string_view payload, absl::Span<float> out);

// The reducer's hot path: acc[i] += weight * decoded[i], fused, without an
// intermediate buffer (except a zstd body, which is first decompressed to scratch
// memory). Same errors as Decode, plus kInvalidArgument for a non-finite weight. On
// error `acc` is left untouched: every check happens before the first write.
HIVEMIND_EXPORT absl::Status DecodeAdd(absl::string_view payload, float weight,
                                       absl::Span<float> acc);

}  // namespace hivemind

#endif  // HIVEMIND_CODEC_CODEC_H_
