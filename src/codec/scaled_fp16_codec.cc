// Scaled fp16: each block of `block_size` elements stores its mean and its largest
// absolute deviation d from the mean (both float32), then one fp16 code per element
// of (x - mean) / d, a value in [-1, 1]. Unlike plain fp16 it neither overflows nor
// underflows, whatever the magnitude of the data.
//
// Body: [num_blocks x (f32 mean, f32 deviation)][count x fp16]
#include <algorithm>
#include <cmath>
#include <limits>

#include "codec/half.h"
#include "codec/payload.h"
#include "codec/simd.h"
#include "util/bytes.h"

namespace hivemind {
namespace internal {
namespace {

uint64_t ScaledBodySize(uint64_t count, uint32_t block_size) {
  return 8 * NumBlocks(count, block_size) + 2 * count;
}

// Mean and maximum absolute deviation of a finite block, in double so that neither
// the sum nor x - mean can overflow.
void BlockStats(const float* x, size_t m, float* mean, float* deviation) {
  double sum = 0.0;
  for (size_t i = 0; i < m; ++i) sum += x[i];
  *mean = static_cast<float>(sum / static_cast<double>(m));
  // Measure the deviation from the rounded mean that the decoder will use, and
  // round it up so that every normalized value stays within [-1, 1].
  double dev = 0.0;
  for (size_t i = 0; i < m; ++i) {
    dev = std::max(dev, std::fabs(static_cast<double>(x[i]) - *mean));
  }
  *deviation = static_cast<float>(dev);
  if (static_cast<double>(*deviation) < dev) {
    *deviation = std::nextafter(*deviation, std::numeric_limits<float>::infinity());
  }
}

absl::Status ScaledEncode(const CodecOptions& options, absl::Span<const float> values,
                          uint64_t, char* body) {
  if (!AllFinite(values.data(), values.size())) return NonFiniteInputError();
  const uint32_t b = options.block_size;
  const uint64_t blocks = NumBlocks(values.size(), b);
  char* codes = body + 8 * blocks;
  for (uint64_t k = 0; k < blocks; ++k) {
    const float* x = values.data() + k * b;
    const size_t m = std::min<uint64_t>(b, values.size() - k * b);
    float mean, deviation;
    BlockStats(x, m, &mean, &deviation);
    StoreLE<float>(body + 8 * k, mean);
    StoreLE<float>(body + 8 * k + 4, deviation);
    const double inv = deviation > 0.0f ? 1.0 / deviation : 0.0;
    for (size_t i = 0; i < m; ++i) {
      const float z = static_cast<float>((static_cast<double>(x[i]) - mean) * inv);
      StoreLE<uint16_t>(codes + 2 * (k * b + i), FloatToHalf(z));
    }
  }
  return absl::OkStatus();
}

absl::Status ScaledValidate(const PayloadInfo& info, const char* body) {
  const uint64_t blocks = NumBlocks(info.count, info.block_size);
  for (uint64_t k = 0; k < blocks; ++k) {
    const float mean = LoadLE<float>(body + 8 * k);
    const float deviation = LoadLE<float>(body + 8 * k + 4);
    // |mean| + deviation bounds every decoded value: keep it finite.
    if (!std::isfinite(mean) || !std::isfinite(deviation) || !(deviation >= 0.0f) ||
        std::fabs(static_cast<double>(mean)) + deviation >
            std::numeric_limits<float>::max()) {
      return absl::DataLossError("scaled fp16 payload has a bad mean or scale");
    }
  }
  // Codes of magnitude above 1.0 (0x3c00) are never produced; rejecting them keeps
  // deviation * z + mean finite.
  if (MaxMasked16(body + 8 * blocks, info.count, 0x7fff) > 0x3c00) {
    return absl::DataLossError("scaled fp16 payload holds a code outside [-1, 1]");
  }
  return absl::OkStatus();
}

HIVEMIND_SIMD_CLONES void ScaledDecodeRun(const char* codes, size_t n, float a, float c,
                                          bool accumulate, float* dst) {
  if (accumulate) {
    for (size_t i = 0; i < n; ++i) {
      dst[i] += a * HalfToFloat(LoadLE<uint16_t>(codes + 2 * i)) + c;
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      dst[i] = a * HalfToFloat(LoadLE<uint16_t>(codes + 2 * i)) + c;
    }
  }
}

void ScaledDecode(const PayloadInfo& info, const char* body, const DecodeTarget& t) {
  const uint32_t b = info.block_size;
  const uint64_t blocks = NumBlocks(info.count, b);
  const char* codes = body + 8 * blocks;
  for (uint64_t k = 0; k < blocks; ++k) {
    const float a = LoadLE<float>(body + 8 * k + 4) * t.weight;
    const float c = LoadLE<float>(body + 8 * k) * t.weight;
    const size_t m = std::min<uint64_t>(b, info.count - k * b);
    ScaledDecodeRun(codes + 2 * k * b, m, a, c, t.accumulate, t.dst + k * b);
  }
}

}  // namespace

const CodecKernels kScaledFloat16Kernels = {true, ScaledBodySize, ScaledEncode,
                                            ScaledValidate, ScaledDecode};

}  // namespace internal
}  // namespace hivemind
