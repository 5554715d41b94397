#include "codec/simd.h"

#include <cstring>

namespace hivemind {
namespace internal {

HIVEMIND_SIMD_CLONES uint32_t MaxAbsBits(const void* x, size_t n) {
  const char* p = static_cast<const char*>(x);
  uint32_t m = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, p + 4 * i, sizeof(b));
    b &= 0x7fffffffu;
    m = b > m ? b : m;
  }
  return m;
}

HIVEMIND_SIMD_CLONES uint32_t CopyMaxAbsBits(const float* x, size_t n, void* out) {
  char* o = static_cast<char*>(out);
  uint32_t m = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, sizeof(b));
    std::memcpy(o + 4 * i, &b, sizeof(b));
    b &= 0x7fffffffu;
    m = b > m ? b : m;
  }
  return m;
}

HIVEMIND_SIMD_CLONES uint16_t MaxMasked16(const void* c, size_t n, uint16_t mask) {
  const char* p = static_cast<const char*>(c);
  uint16_t m = 0;
  for (size_t i = 0; i < n; ++i) {
    uint16_t code;
    std::memcpy(&code, p + 2 * i, sizeof(code));
    uint16_t v = static_cast<uint16_t>(code & mask);
    m = v > m ? v : m;
  }
  return m;
}

}  // namespace internal
}  // namespace hivemind
