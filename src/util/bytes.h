// Little-endian loads and stores on unaligned byte buffers. Every multi-byte integer
// and float the library puts on the wire is little-endian (see docs/wire_format.md).
#ifndef HIVEMIND_UTIL_BYTES_H_
#define HIVEMIND_UTIL_BYTES_H_

#include <cstdint>
#include <cstring>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "hivemind's wire format code assumes a little-endian host"
#endif

namespace hivemind {
namespace internal {

template <typename T>
inline T LoadLE(const void* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

template <typename T>
inline void StoreLE(void* p, T value) {
  std::memcpy(p, &value, sizeof(T));
}

inline uint32_t FloatBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

inline float BitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_UTIL_BYTES_H_
