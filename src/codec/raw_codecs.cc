// Element-wise codecs: raw float32, fp16 and bf16. The body is one value per element.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "codec/half.h"
#include "codec/payload.h"
#include "codec/simd.h"
#include "util/bytes.h"

namespace hivemind {
namespace internal {

absl::Status NonFiniteInputError() {
  return absl::InvalidArgumentError("input holds NaN or Inf; refusing to encode it");
}

namespace {

// ---- raw float32 -------------------------------------------------------------------

uint64_t RawBodySize(uint64_t count, uint32_t) { return count * 4; }

absl::Status RawEncode(const CodecOptions&, absl::Span<const float> values, uint64_t,
                       char* body) {
  // One pass: copy and check (the copy is discarded on error).
  if (CopyMaxAbsBits(values.data(), values.size(), body) >= kFloatNonFiniteBits) {
    return NonFiniteInputError();
  }
  return absl::OkStatus();
}

absl::Status RawValidate(const PayloadInfo& info, const char* body) {
  if (MaxAbsBits(body, info.count) >= kFloatNonFiniteBits) {
    return absl::DataLossError("raw float32 payload holds NaN or Inf");
  }
  return absl::OkStatus();
}

HIVEMIND_SIMD_CLONES void RawDecode(const PayloadInfo& info, const char* body,
                                    const DecodeTarget& t) {
  const size_t n = info.count;
  float* dst = t.dst;
  const float w = t.weight;
  if (t.accumulate) {
    for (size_t i = 0; i < n; ++i) dst[i] += w * LoadLE<float>(body + 4 * i);
  } else if (n > 0) {
    std::memcpy(dst, body, n * sizeof(float));
  }
}

// ---- fp16 and bf16 -----------------------------------------------------------------

uint64_t HalfBodySize(uint64_t count, uint32_t) { return count * 2; }

HIVEMIND_SIMD_CLONES void ToHalf(const float* x, size_t n, char* body) {
  for (size_t i = 0; i < n; ++i) StoreLE<uint16_t>(body + 2 * i, FloatToHalf(x[i]));
}

HIVEMIND_SIMD_CLONES void ToBFloat16(const float* x, size_t n, char* body) {
  for (size_t i = 0; i < n; ++i) {
    StoreLE<uint16_t>(body + 2 * i, FloatToBFloat16(x[i]));
  }
}

absl::Status Float16Encode(const CodecOptions&, absl::Span<const float> values, uint64_t,
                           char* body) {
  if (!AllFinite(values.data(), values.size())) return NonFiniteInputError();
  ToHalf(values.data(), values.size(), body);
  return absl::OkStatus();
}

absl::Status BFloat16Encode(const CodecOptions&, absl::Span<const float> values, uint64_t,
                            char* body) {
  if (!AllFinite(values.data(), values.size())) return NonFiniteInputError();
  ToBFloat16(values.data(), values.size(), body);
  return absl::OkStatus();
}

absl::Status Float16Validate(const PayloadInfo& info, const char* body) {
  if (MaxMasked16(body, info.count, 0x7fff) >= 0x7c00) {
    return absl::DataLossError("fp16 payload holds an Inf or NaN code");
  }
  return absl::OkStatus();
}

absl::Status BFloat16Validate(const PayloadInfo& info, const char* body) {
  if (MaxMasked16(body, info.count, 0x7fff) >= 0x7f80) {
    return absl::DataLossError("bf16 payload holds an Inf or NaN code");
  }
  return absl::OkStatus();
}

template <float (*kToFloat)(uint16_t)>
inline void HalfDecodeLoop(const PayloadInfo& info, const char* body,
                           const DecodeTarget& t) {
  const size_t n = info.count;
  float* dst = t.dst;
  const float w = t.weight;
  if (t.accumulate) {
    for (size_t i = 0; i < n; ++i) dst[i] += w * kToFloat(LoadLE<uint16_t>(body + 2 * i));
  } else {
    for (size_t i = 0; i < n; ++i) dst[i] = kToFloat(LoadLE<uint16_t>(body + 2 * i));
  }
}

HIVEMIND_SIMD_CLONES void Float16Decode(const PayloadInfo& info, const char* body,
                                        const DecodeTarget& t) {
  HalfDecodeLoop<HalfToFloat>(info, body, t);
}

HIVEMIND_SIMD_CLONES void BFloat16Decode(const PayloadInfo& info, const char* body,
                                         const DecodeTarget& t) {
  HalfDecodeLoop<BFloat16ToFloat>(info, body, t);
}

}  // namespace

const CodecKernels kRawKernels = {false, RawBodySize, RawEncode, RawValidate, RawDecode};
const CodecKernels kFloat16Kernels = {false, HalfBodySize, Float16Encode, Float16Validate,
                                      Float16Decode};
const CodecKernels kBFloat16Kernels = {false, HalfBodySize, BFloat16Encode,
                                       BFloat16Validate, BFloat16Decode};

}  // namespace internal
}  // namespace hivemind
