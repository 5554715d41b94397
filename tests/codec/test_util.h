// Shared helpers for the codec tests: data generators and per-codec error bounds.
#ifndef HIVEMIND_TESTS_CODEC_TEST_UTIL_H_
#define HIVEMIND_TESTS_CODEC_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hivemind/codec/codec.h"
#include "hivemind/codec/factory.h"

namespace hivemind {
namespace testing_util {

inline std::vector<float> RandomNormal(size_t n, uint32_t seed, float mean = 0.0f,
                                       float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline std::unique_ptr<Codec> MakeCodec(const std::string& spec) {
  auto codec = CreateCodecFromSpec(spec);
  EXPECT_TRUE(codec.ok()) << spec << ": " << codec.status();
  return std::move(codec).value();
}

inline std::string EncodeOrDie(const Codec& codec, const std::vector<float>& x,
                               uint64_t seed = 0) {
  std::string payload;
  absl::Status s = codec.Encode(x, &payload, EncodeOptions{seed});
  EXPECT_TRUE(s.ok()) << s;
  return payload;
}

inline std::vector<float> DecodeOrDie(const std::string& payload, size_t n) {
  std::vector<float> out(n);
  absl::Status s = Decode(payload, absl::MakeSpan(out));
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

// Largest |x| over each block of `block` elements, one entry per element.
inline std::vector<double> BlockAbsMax(const std::vector<float>& x, size_t block) {
  std::vector<double> out(x.size());
  for (size_t b = 0; b < x.size(); b += block) {
    const size_t e = std::min(x.size(), b + block);
    double m = 0;
    for (size_t i = b; i < e; ++i) m = std::max(m, std::fabs(double{x[i]}));
    std::fill(out.begin() + b, out.begin() + e, m);
  }
  return out;
}

}  // namespace testing_util
}  // namespace hivemind

#endif  // HIVEMIND_TESTS_CODEC_TEST_UTIL_H_
