// Blockwise 8/4/2-bit codecs. Each block of `block_size` elements stores its absolute
// maximum s (float32) and one code q in [0, L-1] per element, meaning the value
// s * (2q / (L-1) - 1): L levels spread evenly over [-s, s] (L = 255, 15, 4).
// Decoding computes (q * (2 / (L-1)) - 1) * s, in that order, on every machine.
//
// Body: [num_blocks x f32 absmax][codes of block 0][codes of block 1]...
// A block of m elements packs P = 8 / bits codes per byte in h = ceil(m / P) bytes:
// element i of the block sits in byte (i % h) at bit offset bits * (i / h). Splitting
// the block into P contiguous runs keeps both encode and decode loops contiguous, so
// they vectorize.
#include <algorithm>
#include <cstring>

#include "codec/payload.h"
#include "codec/simd.h"
#include "util/bytes.h"

namespace hivemind {
namespace internal {
namespace {

template <int kBits>
struct Levels {
  static constexpr int kPerByte = 8 / kBits;
  static constexpr int kLevels = kBits == 8 ? 255 : (1 << kBits) - (kBits == 4 ? 1 : 0);
  static constexpr uint32_t kMask = (1u << kBits) - 1;
};

template <int kBits>
uint64_t CodeBytes(uint64_t count, uint32_t block_size) {
  constexpr int p = Levels<kBits>::kPerByte;
  const uint64_t full = count / block_size;
  const uint64_t tail = count % block_size;
  return full * (block_size / p) + (tail + p - 1) / p;
}

template <int kBits>
uint64_t BlockwiseBodySize(uint64_t count, uint32_t block_size) {
  return 4 * NumBlocks(count, block_size) + CodeBytes<kBits>(count, block_size);
}

// A 32-bit integer hash with good avalanche (a "lowbias32"-style mixer); it is the
// counter-based generator behind stochastic rounding.
inline uint32_t Mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

inline uint32_t BlockKey(uint64_t seed, uint64_t block) {
  const uint64_t z = seed * 0x9e3779b97f4a7c15ull + block;
  return Mix32(static_cast<uint32_t>(z) ^ Mix32(static_cast<uint32_t>(z >> 32)));
}

// Quantizes x[0..n) into the bit field at `shift` of codes[0..n). `first` run
// assigns whole bytes, later runs OR their field in.
HIVEMIND_SIMD_CLONES void QuantizeNearest(const float* x, size_t n, float inv, float half,
                                          int max_q, int shift, bool first,
                                          uint8_t* codes) {
  for (size_t i = 0; i < n; ++i) {
    // t + 0.5 truncated is round-half-up for t >= -0.5, which is all t here (the
    // clamp catches rounding slop); lround would not vectorize.
    int q = static_cast<int>(x[i] * inv + half +
                             0.5f);  // NOLINT(bugprone-incorrect-roundings)
    q = std::min(std::max(q, 0), max_q);
    const uint8_t bits = static_cast<uint8_t>(q << shift);
    codes[i] = first ? bits : static_cast<uint8_t>(codes[i] | bits);
  }
}

HIVEMIND_SIMD_CLONES void QuantizeStochastic(const float* x, size_t n, float inv,
                                             float half, int max_q, int shift, bool first,
                                             uint32_t key, uint32_t offset,
                                             uint8_t* codes) {
  for (size_t i = 0; i < n; ++i) {
    const uint32_t r = Mix32(key + (offset + static_cast<uint32_t>(i)) * 0x9e3779b9u);
    const float u = static_cast<float>(r >> 8) * (1.0f / 16777216.0f);
    int q = static_cast<int>(x[i] * inv + half + u);
    q = std::min(std::max(q, 0), max_q);
    const uint8_t bits = static_cast<uint8_t>(q << shift);
    codes[i] = first ? bits : static_cast<uint8_t>(codes[i] | bits);
  }
}

template <int kBits>
void EncodeBlock(const float* x, size_t m, float absmax, bool stochastic, uint32_t key,
                 uint8_t* codes) {
  using L = Levels<kBits>;
  const float half = (L::kLevels - 1) * 0.5f;
  const float inv = absmax > 0.0f ? half / absmax : 0.0f;
  const size_t h = (m + L::kPerByte - 1) / L::kPerByte;
  for (int s = 0; s < L::kPerByte; ++s) {
    const size_t begin = s * h;
    if (begin >= m && s > 0) break;
    const size_t n = std::min(h, m - begin);
    if (stochastic) {
      QuantizeStochastic(x + begin, n, inv, half, L::kLevels - 1, kBits * s, s == 0, key,
                         static_cast<uint32_t>(begin), codes);
    } else {
      QuantizeNearest(x + begin, n, inv, half, L::kLevels - 1, kBits * s, s == 0, codes);
    }
    // Bytes of the first run past the end of a short last run keep zero bits there.
  }
}

template <int kBits>
absl::Status BlockwiseEncode(const CodecOptions& options, absl::Span<const float> values,
                             uint64_t seed, char* body) {
  const uint32_t b = options.block_size;
  const uint64_t count = values.size();
  const uint64_t blocks = NumBlocks(count, b);
  char* scales = body;
  uint8_t* codes = reinterpret_cast<uint8_t*>(body + 4 * blocks);
  for (uint64_t k = 0; k < blocks; ++k) {
    const float* x = values.data() + k * b;
    const size_t m = std::min<uint64_t>(b, count - k * b);
    const uint32_t absmax_bits = MaxAbsBits(x, m);
    if (absmax_bits >= kFloatNonFiniteBits) return NonFiniteInputError();
    const float absmax = BitsToFloat(absmax_bits);
    StoreLE<float>(scales + 4 * k, absmax);
    EncodeBlock<kBits>(x, m, absmax, options.stochastic_rounding, BlockKey(seed, k),
                       codes);
    codes += (m + Levels<kBits>::kPerByte - 1) / Levels<kBits>::kPerByte;
  }
  return absl::OkStatus();
}

absl::Status BlockwiseValidate(const PayloadInfo& info, const char* body) {
  const uint64_t blocks = NumBlocks(info.count, info.block_size);
  for (uint64_t k = 0; k < blocks; ++k) {
    const float s = LoadLE<float>(body + 4 * k);
    if (!(s >= 0.0f) || FloatBits(s) >= kFloatNonFiniteBits) {
      return absl::DataLossError("blockwise payload has a negative or non-finite scale");
    }
  }
  return absl::OkStatus();
}

// dst[i] (+)= (level(q) * step - 1) * scale over one run, with q the bit field at
// `shift` of codes[i]. The level is in [-1, 1] before the scale multiplies it, so no
// finite scale can overflow. A code above the top level (never produced by an
// encoder) decodes as the top level.
HIVEMIND_SIMD_CLONES void DequantizeRun(const uint8_t* codes, size_t n, int shift,
                                        uint32_t mask, uint32_t max_q, float step,
                                        float scale, bool accumulate, float* dst) {
  if (accumulate) {
    for (size_t i = 0; i < n; ++i) {
      const uint32_t q = std::min((codes[i] >> shift) & mask, max_q);
      dst[i] += (static_cast<float>(q) * step - 1.0f) * scale;
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      const uint32_t q = std::min((codes[i] >> shift) & mask, max_q);
      dst[i] = (static_cast<float>(q) * step - 1.0f) * scale;
    }
  }
}

template <int kBits>
void BlockwiseDecode(const PayloadInfo& info, const char* body, const DecodeTarget& t) {
  using L = Levels<kBits>;
  const uint32_t b = info.block_size;
  const uint64_t blocks = NumBlocks(info.count, b);
  const uint8_t* codes = reinterpret_cast<const uint8_t*>(body + 4 * blocks);
  const float step = 2.0f / (L::kLevels - 1);
  for (uint64_t k = 0; k < blocks; ++k) {
    const float scale = LoadLE<float>(body + 4 * k) * t.weight;
    const size_t m = std::min<uint64_t>(b, info.count - k * b);
    const size_t h = (m + L::kPerByte - 1) / L::kPerByte;
    float* dst = t.dst + k * b;
    for (int r = 0; r < L::kPerByte && r * h < m; ++r) {
      DequantizeRun(codes, std::min(h, m - r * h), kBits * r, L::kMask, L::kLevels - 1,
                    step, scale, t.accumulate, dst + r * h);
    }
    codes += h;
  }
}

}  // namespace

const CodecKernels kBlockwise8BitKernels = {true, BlockwiseBodySize<8>,
                                            BlockwiseEncode<8>, BlockwiseValidate,
                                            BlockwiseDecode<8>};
const CodecKernels kBlockwise4BitKernels = {true, BlockwiseBodySize<4>,
                                            BlockwiseEncode<4>, BlockwiseValidate,
                                            BlockwiseDecode<4>};
const CodecKernels kBlockwise2BitKernels = {true, BlockwiseBodySize<2>,
                                            BlockwiseEncode<2>, BlockwiseValidate,
                                            BlockwiseDecode<2>};

}  // namespace internal
}  // namespace hivemind
