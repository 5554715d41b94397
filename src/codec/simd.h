// Portable SIMD: hot loops are written as plain loops that the compiler vectorizes,
// and compiled twice (baseline x86-64 and AVX2) with a runtime switch (ifunc), so the
// build stays portable (no -march=native) and fast machines still get AVX2.
//
// The library is compiled with -ffp-contract=off: both clones do the same float
// operations in the same order, so their results are bit-identical.
#ifndef HIVEMIND_CODEC_SIMD_H_
#define HIVEMIND_CODEC_SIMD_H_

#include <cstddef>
#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define HIVEMIND_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HIVEMIND_SIMD_CLONES
#endif

namespace hivemind {
namespace internal {

// Bit pattern of the largest finite float's exponent field: a float whose absolute
// bit pattern is at least this is Inf or NaN.
inline constexpr uint32_t kFloatNonFiniteBits = 0x7f800000u;

// Returns the largest absolute bit pattern (sign cleared) over the n floats at x
// (any alignment). For
// non-negative floats the integer order of bit patterns is the numeric order, and
// Inf and NaN patterns are above every finite one, so one integer max gives both the
// absolute maximum and a finiteness check.
uint32_t MaxAbsBits(const void* x, size_t n);

// Copies n floats from x to out (any alignment) and returns MaxAbsBits of them, in
// one pass.
uint32_t CopyMaxAbsBits(const float* x, size_t n, void* out);

// Returns true if every float in x[0..n) is finite.
inline bool AllFinite(const void* x, size_t n) {
  return MaxAbsBits(x, n) < kFloatNonFiniteBits;
}

// Returns the largest value of (c[i] & mask) over the n 16-bit codes at c (any
// alignment).
uint16_t MaxMasked16(const void* c, size_t n, uint16_t mask);

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_CODEC_SIMD_H_
