#include "hivemind/wire/buffer.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "hivemind/util/logging.h"
#include "util/bytes.h"
#include "util/status_macros.h"

namespace hivemind {
namespace wire {
namespace {

using internal::BitsToFloat;
using internal::FloatBits;
using internal::LoadLE;
using internal::StoreLE;

template <typename T>
void AppendLE(std::string* dst, T value) {
  char bytes[sizeof(T)];
  StoreLE<T>(bytes, value);
  dst->append(bytes, sizeof(T));
}

}  // namespace

Writer::Writer() : dst_(&owned_) {}

Writer::Writer(std::string* dst) : dst_(dst) {}

void Writer::PutU8(uint8_t value) { AppendLE(dst_, value); }
void Writer::PutU16(uint16_t value) { AppendLE(dst_, value); }
void Writer::PutU32(uint32_t value) { AppendLE(dst_, value); }
void Writer::PutU64(uint64_t value) { AppendLE(dst_, value); }
void Writer::PutF32(float value) { AppendLE(dst_, FloatBits(value)); }

void Writer::PutBytes(absl::string_view value) {
  // A wrapped length prefix would silently desynchronize every later field, so this
  // is checked even in release builds.
  if (value.size() > std::numeric_limits<uint32_t>::max()) {
    HIVEMIND_LOG(kError, "wire: PutBytes of ", value.size(),
                 " bytes exceeds the u32 prefix");
    std::abort();
  }
  PutU32(static_cast<uint32_t>(value.size()));
  PutRaw(value);
}

void Writer::PutRaw(absl::string_view value) { dst_->append(value.data(), value.size()); }

std::string Writer::Release() {
  std::string result = std::move(*dst_);
  dst_->clear();  // A moved-from string is only "valid but unspecified".
  return result;
}

absl::Status Reader::Need(size_t n, absl::string_view what) const {
  if (n > remaining()) {
    return absl::DataLossError(absl::StrCat("reading ", what, " at offset ", pos_,
                                            ": needs ", n, " bytes, only ", remaining(),
                                            " remain"));
  }
  return absl::OkStatus();
}

absl::Status Reader::Take(size_t n, absl::string_view what, const char** p) {
  HIVEMIND_RETURN_IF_ERROR(Need(n, what));
  *p = data_.data() + pos_;
  pos_ += n;
  return absl::OkStatus();
}

absl::Status Reader::ReadU8(uint8_t* out) {
  const char* p;
  HIVEMIND_RETURN_IF_ERROR(Take(sizeof(*out), "u8", &p));
  *out = LoadLE<uint8_t>(p);
  return absl::OkStatus();
}

absl::Status Reader::ReadU16(uint16_t* out) {
  const char* p;
  HIVEMIND_RETURN_IF_ERROR(Take(sizeof(*out), "u16", &p));
  *out = LoadLE<uint16_t>(p);
  return absl::OkStatus();
}

absl::Status Reader::ReadU32(uint32_t* out) {
  const char* p;
  HIVEMIND_RETURN_IF_ERROR(Take(sizeof(*out), "u32", &p));
  *out = LoadLE<uint32_t>(p);
  return absl::OkStatus();
}

absl::Status Reader::ReadU64(uint64_t* out) {
  const char* p;
  HIVEMIND_RETURN_IF_ERROR(Take(sizeof(*out), "u64", &p));
  *out = LoadLE<uint64_t>(p);
  return absl::OkStatus();
}

absl::Status Reader::ReadF32(float* out) {
  HIVEMIND_RETURN_IF_ERROR(Need(sizeof(*out), "f32"));
  const uint32_t bits = LoadLE<uint32_t>(data_.data() + pos_);
  const float value = BitsToFloat(bits);
  if (!std::isfinite(value)) {
    return absl::DataLossError(absl::StrCat("reading f32 at offset ", pos_, ": 0x",
                                            absl::Hex(bits, absl::kZeroPad8), " is ",
                                            std::isnan(value) ? "NaN" : "infinite"));
  }
  *out = value;
  pos_ += sizeof(*out);
  return absl::OkStatus();
}

absl::Status Reader::ReadBytes(absl::string_view* out, uint32_t max_size) {
  HIVEMIND_RETURN_IF_ERROR(Need(sizeof(uint32_t), "bytes length prefix"));
  const uint32_t size = LoadLE<uint32_t>(data_.data() + pos_);
  if (size > max_size) {
    return absl::DataLossError(absl::StrCat("reading bytes at offset ", pos_,
                                            ": length prefix says ", size,
                                            " bytes, over the limit of ", max_size));
  }
  const size_t after_prefix = remaining() - sizeof(uint32_t);
  if (size > after_prefix) {
    return absl::DataLossError(absl::StrCat("reading bytes at offset ", pos_,
                                            ": length prefix says ", size,
                                            " bytes, only ", after_prefix, " remain"));
  }
  *out = data_.substr(pos_ + sizeof(uint32_t), size);
  pos_ += sizeof(uint32_t) + size;
  return absl::OkStatus();
}

absl::Status Reader::ReadRaw(size_t n, absl::string_view* out) {
  const char* p;
  HIVEMIND_RETURN_IF_ERROR(Take(n, "raw bytes", &p));
  *out = absl::string_view(p, n);
  return absl::OkStatus();
}

absl::Status Reader::ExpectEnd() const {
  if (remaining() != 0) {
    return absl::DataLossError(absl::StrCat(remaining(), " trailing bytes after offset ",
                                            pos_, " (buffer is ", data_.size(),
                                            " bytes)"));
  }
  return absl::OkStatus();
}

}  // namespace wire
}  // namespace hivemind
