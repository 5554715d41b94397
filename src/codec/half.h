// Branch-free float <-> fp16 / bf16 conversions, written so that loops over them
// vectorize. Inputs to the encoders are finite (checked before conversion).
#ifndef HIVEMIND_CODEC_HALF_H_
#define HIVEMIND_CODEC_HALF_H_

#include <cstdint>

#include "util/bytes.h"

namespace hivemind {
namespace internal {

inline constexpr float kFloat16Max = 65504.0f;
// Largest finite bfloat16 (0x7f7f): 2^127 * (2 - 2^-7).
inline constexpr float kBFloat16Max = 3.38953139e38f;

// fp16 of a finite float, round to nearest even; |f| is clamped to 65504 first so
// nothing overflows to Inf.
inline uint16_t FloatToHalf(float f) {
  const uint32_t bits = FloatBits(f);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  // Clamp on the bit pattern (monotone for |f|, and an integer min vectorizes where
  // a float compare-and-select does not without -ffinite-math-only).
  const int32_t kMaxBits = 0x477fe000;  // 65504.0f
  const int32_t raw_abs = static_cast<int32_t>(bits & 0x7fffffffu);
  const uint32_t abs_bits =
      static_cast<uint32_t>(raw_abs < kMaxBits ? raw_abs : kMaxBits);
  // Normal half: rebias the exponent (127 -> 15) and round the mantissa from 23 to
  // 10 bits, to nearest even.
  const uint32_t rebiased = abs_bits - (112u << 23);
  const uint32_t normal = (rebiased + 0xfffu + ((abs_bits >> 13) & 1u)) >> 13;
  // Subnormal half (|f| < 2^-14): adding 0.5 makes the float's ulp 2^-24, the half
  // subnormal step, so the hardware rounds to nearest even for us; the low bits of
  // the sum are the half's mantissa.
  const float sum = BitsToFloat(abs_bits) + 0.5f;
  const uint32_t subnormal = FloatBits(sum) - 0x3f000000u;
  // Signed compare (abs_bits < 2^31): x86 SIMD has no unsigned 32-bit compare.
  const uint32_t magnitude =
      static_cast<int32_t>(abs_bits) < 0x38800000 ? subnormal : normal;
  return static_cast<uint16_t>(sign | magnitude);
}

// Float of an fp16 code. Exponent 31 (Inf/NaN) must be rejected by the caller: here
// it maps to a large finite value.
inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  // Shifting the exponent and mantissa into float position gives the value times
  // 2^-112 (exactly, for normals and subnormals alike); multiplying by 2^112 rebiases.
  const float magnitude = BitsToFloat(static_cast<uint32_t>(h & 0x7fffu) << 13) *
                          5.192296858534828e33f;  // 2^112
  return BitsToFloat(FloatBits(magnitude) | sign);
}

// bfloat16 of a finite float, round to nearest even, clamped to the largest finite
// bfloat16 so nothing overflows to Inf.
inline uint16_t FloatToBFloat16(float f) {
  const uint32_t bits = FloatBits(f);
  const int32_t kMaxBits = 0x7f7f0000;  // kBFloat16Max
  const int32_t raw_abs = static_cast<int32_t>(bits & 0x7fffffffu);
  const uint32_t clamped = (bits & 0x80000000u) |
                           static_cast<uint32_t>(raw_abs < kMaxBits ? raw_abs : kMaxBits);
  return static_cast<uint16_t>((clamped + 0x7fffu + ((clamped >> 16) & 1u)) >> 16);
}

inline float BFloat16ToFloat(uint16_t b) {
  return BitsToFloat(static_cast<uint32_t>(b) << 16);
}

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_CODEC_HALF_H_
