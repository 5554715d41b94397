// The 16-byte header that starts every codec payload, and the per-codec kernel table
// through which payloads are encoded and decoded. Layout: docs/wire_format.md.
#ifndef HIVEMIND_CODEC_PAYLOAD_H_
#define HIVEMIND_CODEC_PAYLOAD_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "hivemind/codec/codec.h"

namespace hivemind {
namespace internal {

inline constexpr uint8_t kPayloadFlagZstd = 0x01;
inline constexpr uint32_t kMinBlockSize = 8;
inline constexpr uint32_t kMaxBlockSize = 1u << 20;

// Number of blocks of `block_size` elements (the last may be short) in `count`.
inline uint64_t NumBlocks(uint64_t count, uint32_t block_size) {
  return (count + block_size - 1) / block_size;
}

// Writes the header for `info` into out[0..kPayloadHeaderSize).
void WritePayloadHeader(const PayloadInfo& info, char* out);

// Returns kInvalidArgument unless block_size is a multiple of 8 in
// [kMinBlockSize, kMaxBlockSize].
absl::Status ValidateBlockSize(uint32_t block_size);

// The kInvalidArgument every encoder returns for NaN or Inf input.
absl::Status NonFiniteInputError();

// Where a decoded value goes: dst[i] = weight * v (accumulate == false) or
// dst[i] += weight * v (accumulate == true).
struct DecodeTarget {
  float* dst;
  float weight;
  bool accumulate;
};

// The operations of one codec. The body is the payload after its header, with any
// zstd stage already removed.
struct CodecKernels {
  // Whether payloads of this codec carry a block size (else it must be 0).
  bool uses_blocks;
  // Exact body size for `count` elements and `block_size`.
  uint64_t (*body_size)(uint64_t count, uint32_t block_size);
  // Writes the body of `values` into `body` (body_size bytes). Returns
  // kInvalidArgument on a non-finite input.
  absl::Status (*encode)(const CodecOptions& options, absl::Span<const float> values,
                         uint64_t seed, char* body);
  // Checks everything that could make decoding produce a non-finite value or read
  // out of bounds (the body size is already checked). kDataLoss on failure.
  absl::Status (*validate)(const PayloadInfo& info, const char* body);
  // Decodes a validated body into `target` (info.count elements).
  void (*decode)(const PayloadInfo& info, const char* body, const DecodeTarget& target);
};

// The kernels of `id`, or nullptr for an unknown id.
const CodecKernels* KernelsFor(CodecId id);

// Kernel tables, one per codec family (defined beside each family's code).
extern const CodecKernels kRawKernels;
extern const CodecKernels kFloat16Kernels;
extern const CodecKernels kBFloat16Kernels;
extern const CodecKernels kScaledFloat16Kernels;
extern const CodecKernels kUniform8BitKernels;
extern const CodecKernels kQuantile8BitKernels;
extern const CodecKernels kBlockwise8BitKernels;
extern const CodecKernels kBlockwise4BitKernels;
extern const CodecKernels kBlockwise2BitKernels;

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_CODEC_PAYLOAD_H_
