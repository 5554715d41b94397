#include "codec/payload.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "util/bytes.h"

namespace hivemind {
namespace internal {

void WritePayloadHeader(const PayloadInfo& info, char* out) {
  out[0] = static_cast<char>(info.codec);
  out[1] = static_cast<char>(info.zstd ? kPayloadFlagZstd : 0);
  StoreLE<uint16_t>(out + 2, 0);
  StoreLE<uint32_t>(out + 4, info.block_size);
  StoreLE<uint64_t>(out + 8, info.count);
}

absl::Status ValidateBlockSize(uint32_t block_size) {
  if (block_size < kMinBlockSize || block_size > kMaxBlockSize || block_size % 8 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("block size ", block_size, " is not a multiple of 8 in [",
                     kMinBlockSize, ", ", kMaxBlockSize, "]"));
  }
  return absl::OkStatus();
}

const CodecKernels* KernelsFor(CodecId id) {
  switch (id) {
    case CodecId::kNone:
      return &kRawKernels;
    case CodecId::kFloat16:
      return &kFloat16Kernels;
    case CodecId::kBFloat16:
      return &kBFloat16Kernels;
    case CodecId::kScaledFloat16:
      return &kScaledFloat16Kernels;
    case CodecId::kUniform8Bit:
      return &kUniform8BitKernels;
    case CodecId::kQuantile8Bit:
      return &kQuantile8BitKernels;
    case CodecId::kBlockwise8Bit:
      return &kBlockwise8BitKernels;
    case CodecId::kBlockwise4Bit:
      return &kBlockwise4BitKernels;
    case CodecId::kBlockwise2Bit:
      return &kBlockwise2BitKernels;
  }
  return nullptr;
}

}  // namespace internal
}  // namespace hivemind
