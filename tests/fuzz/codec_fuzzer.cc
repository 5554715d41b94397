// libFuzzer target for the codec decoders: arbitrary bytes as a codec payload. Built
// once for all codecs (the payload's first byte picks the decoder) and once per codec
// with HIVEMIND_FUZZ_CODEC_ID set, which forces that first byte so every run of that
// target exercises one decoder. A decode that succeeds must produce finite values; a
// decode that fails must leave the destination untouched.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "hivemind/codec/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string payload(reinterpret_cast<const char*>(data), size);
#ifdef HIVEMIND_FUZZ_CODEC_ID
  if (!payload.empty()) payload[0] = static_cast<char>(HIVEMIND_FUZZ_CODEC_ID);
#endif
  auto info = hivemind::ReadPayloadInfo(payload);
  // Destination sizes follow the header (bounded, so huge counts do not exhaust
  // memory: they are still tried against a small destination).
  const size_t count = info.ok() && info->count <= (1u << 20) ? info->count : 16;
  constexpr float kSentinel = 7.0f;
  std::vector<float> out(count, kSentinel);
  const absl::Status decoded = hivemind::Decode(payload, absl::MakeSpan(out));
  for (float v : out) {
    if (!std::isfinite(v) || (!decoded.ok() && v != kSentinel)) std::abort();
  }
  std::vector<float> acc(count, 1.0f);
  const absl::Status added = hivemind::DecodeAdd(payload, -0.5f, absl::MakeSpan(acc));
  if (added.ok() != decoded.ok()) std::abort();
  for (size_t i = 0; i < count; ++i) {
    // Scaling by -0.5 is exact except for subnormals: allow a tiny slack.
    const double expected = 1.0 - 0.5 * static_cast<double>(out[i]);
    if (decoded.ok() && std::fabs(acc[i] - expected) > 1e-6 * (std::fabs(expected) + 1)) {
      std::abort();
    }
    if (!added.ok() && acc[i] != 1.0f) std::abort();
  }
  return 0;
}
