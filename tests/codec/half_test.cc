#include <cmath>
#include <cstdint>
#include <random>

#include "codec/half.h"
#include "gtest/gtest.h"
#include "util/bytes.h"

namespace hivemind {
namespace internal {
namespace {

// Reference fp16 value of a code, computed with ldexp.
double HalfValue(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  const double magnitude = exponent == 0 ? std::ldexp(mantissa, -24)
                                         : std::ldexp(1024 + mantissa, exponent - 25);
  return (h & 0x8000) ? -magnitude : magnitude;
}

TEST(Half, EveryFiniteCodeRoundTripsExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    if (((h >> 10) & 0x1f) == 0x1f) continue;  // Inf and NaN codes
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    ASSERT_EQ(static_cast<double>(f), HalfValue(static_cast<uint16_t>(h))) << h;
    const uint16_t back = FloatToHalf(f);
    // -0 and +0 both exist; everything else must come back bit for bit.
    ASSERT_EQ(back, h) << "code " << h << " value " << f;
  }
}

TEST(Half, RoundsToNearestCode) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-26.0f, 16.0f);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::exp2(exponent(rng)) * (i % 2 ? 1.0f : -1.0f);
    const uint16_t h = FloatToHalf(x);
    const double err = std::fabs(HalfValue(h) - x);
    // No other code is strictly closer.
    for (int d : {-1, 1}) {
      const uint16_t other = static_cast<uint16_t>(h + d);
      if (((other >> 10) & 0x1f) == 0x1f || ((other ^ h) & 0x8000)) continue;
      ASSERT_LE(err, std::fabs(HalfValue(other) - x)) << x;
    }
  }
}

TEST(Half, ClampsInsteadOfOverflowing) {
  EXPECT_EQ(HalfToFloat(FloatToHalf(1e9f)), 65504.0f);
  EXPECT_EQ(HalfToFloat(FloatToHalf(-65519.0f)), -65504.0f);
  EXPECT_EQ(HalfToFloat(FloatToHalf(1e-9f)), 0.0f);
}

TEST(BFloat16, RoundsToNearestEvenAndClamps) {
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(1.0f)), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even code (1.0).
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(1.0f + 0.00390625f)), 1.0f);
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(1.0f + 0.005f)), 1.0078125f);
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(3.4e38f)), kBFloat16Max);
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(-3.4e38f)), -kBFloat16Max);
}

}  // namespace
}  // namespace internal
}  // namespace hivemind
