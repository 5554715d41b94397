// Codebook codecs: uniform 8-bit and quantile 8-bit. Both map each element to one of
// 256 bins and send, per bin, the mean of the elements that fell into it (so the
// decoder reproduces each bin's mean exactly), then one byte per element.
//  - uniform: bins of width 6*sigma/256 centred on the mean (values beyond
//    mean +- 3 sigma fall into the edge bins);
//  - quantile: bin borders at the 1/256 .. 255/256 quantiles of a sample of the data.
//
// Body: [256 x f32 codebook][count x u8 code]
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "codec/payload.h"
#include "codec/simd.h"
#include "util/bytes.h"

namespace hivemind {
namespace internal {
namespace {

constexpr int kBins = 256;
constexpr uint64_t kCodebookBytes = uint64_t{4} * kBins;

uint64_t CodebookBodySize(uint64_t count, uint32_t) { return kCodebookBytes + count; }

// Writes the bin means (or `fallback[k]` for empty bins) as the codebook.
void WriteCodebook(const float* x, size_t n, const uint8_t* codes,
                   const std::array<float, kBins>& fallback, char* body) {
  std::array<double, kBins> sum{};
  std::array<uint64_t, kBins> count{};
  for (size_t i = 0; i < n; ++i) {
    sum[codes[i]] += x[i];
    ++count[codes[i]];
  }
  for (int k = 0; k < kBins; ++k) {
    const float value = count[k] > 0
                            ? static_cast<float>(sum[k] / static_cast<double>(count[k]))
                            : fallback[k];
    StoreLE<float>(body + size_t{4} * k, value);
  }
}

absl::Status UniformEncode(const CodecOptions&, absl::Span<const float> values, uint64_t,
                           char* body) {
  const float* x = values.data();
  const size_t n = values.size();
  if (!AllFinite(x, n)) return NonFiniteInputError();
  double sum = 0.0, sum_sq = 0.0;
  for (size_t i = 0; i < n; ++i) sum += x[i];
  const double mean = n > 0 ? sum / static_cast<double>(n) : 0.0;
  for (size_t i = 0; i < n; ++i) sum_sq += (x[i] - mean) * (x[i] - mean);
  const double sigma = n > 0 ? std::sqrt(sum_sq / static_cast<double>(n)) : 0.0;
  const double scale = 6.0 * sigma / kBins;
  const double inv = scale > 0.0 ? 1.0 / scale : 0.0;
  uint8_t* codes = reinterpret_cast<uint8_t*>(body + kCodebookBytes);
  for (size_t i = 0; i < n; ++i) {
    const double t = std::round((x[i] - mean) * inv) + kBins / 2.0;
    codes[i] = static_cast<uint8_t>(std::min(std::max(t, 0.0), kBins - 1.0));
  }
  std::array<float, kBins> centres;
  for (int k = 0; k < kBins; ++k) {
    centres[k] = static_cast<float>(mean + (k - kBins / 2.0) * scale);
  }
  WriteCodebook(x, n, codes, centres, body);
  return absl::OkStatus();
}

// The 255 inner borders: quantiles of an evenly strided sample of at most 64 Ki
// elements (deterministic, and cheap for large buffers).
std::array<float, kBins - 1> QuantileBorders(const float* x, size_t n) {
  std::array<float, kBins - 1> borders{};
  if (n == 0) return borders;
  const size_t m = std::min<size_t>(n, 1 << 16);
  std::vector<float> sample(m);
  for (size_t i = 0; i < m; ++i) sample[i] = x[(i * n) / m];
  std::sort(sample.begin(), sample.end());
  for (int k = 0; k < kBins - 1; ++k) {
    borders[k] = sample[std::min(m - 1, ((k + 1) * m) / kBins)];
  }
  return borders;
}

// Code = number of borders strictly below x (a branch-free binary search).
inline uint8_t QuantileCode(const std::array<float, kBins - 1>& borders, float x) {
  int index = 0;
  for (int step = kBins / 2; step > 0; step /= 2) {
    index += borders[index + step - 1] < x ? step : 0;
  }
  return static_cast<uint8_t>(index);
}

absl::Status QuantileEncode(const CodecOptions&, absl::Span<const float> values, uint64_t,
                            char* body) {
  const float* x = values.data();
  const size_t n = values.size();
  if (!AllFinite(x, n)) return NonFiniteInputError();
  const std::array<float, kBins - 1> borders = QuantileBorders(x, n);
  uint8_t* codes = reinterpret_cast<uint8_t*>(body + kCodebookBytes);
  for (size_t i = 0; i < n; ++i) codes[i] = QuantileCode(borders, x[i]);
  std::array<float, kBins> fallback;
  for (int k = 0; k < kBins; ++k) fallback[k] = borders[std::min(k, kBins - 2)];
  WriteCodebook(x, n, codes, fallback, body);
  return absl::OkStatus();
}

absl::Status CodebookValidate(const PayloadInfo&, const char* body) {
  if (!AllFinite(body, kBins)) {
    return absl::DataLossError("8-bit codebook holds NaN or Inf");
  }
  return absl::OkStatus();
}

HIVEMIND_SIMD_CLONES void LookupRun(const uint8_t* codes, size_t n, const float* table,
                                    bool accumulate, float* dst) {
  if (accumulate) {
    for (size_t i = 0; i < n; ++i) dst[i] += table[codes[i]];
  } else {
    for (size_t i = 0; i < n; ++i) dst[i] = table[codes[i]];
  }
}

void CodebookDecode(const PayloadInfo& info, const char* body, const DecodeTarget& t) {
  std::array<float, kBins> table;
  for (int k = 0; k < kBins; ++k)
    table[k] = t.weight * LoadLE<float>(body + size_t{4} * k);
  LookupRun(reinterpret_cast<const uint8_t*>(body + kCodebookBytes), info.count,
            table.data(), t.accumulate, t.dst);
}

}  // namespace

const CodecKernels kUniform8BitKernels = {false, CodebookBodySize, UniformEncode,
                                          CodebookValidate, CodebookDecode};
const CodecKernels kQuantile8BitKernels = {false, CodebookBodySize, QuantileEncode,
                                           CodebookValidate, CodebookDecode};

}  // namespace internal
}  // namespace hivemind
