// Little-endian serialization of message bodies.
//
// Writer appends fixed-width integers, floats and byte strings to a buffer; Reader
// reads them back from an untrusted buffer with bounds checks on every read. The
// encodings (docs/wire_format.md, "Body primitives") are:
//   u8, u16, u32, u64   little-endian, no padding or alignment
//   f32                 IEEE-754 binary32 bits as a little-endian u32
//   bytes               u32 length n, then n raw bytes
//   raw                 bytes whose length the message layout fixes
//
// Example:
//   Writer w;
//   w.PutU32(peer_count);
//   w.PutBytes(peer_id);
//   std::string body = w.Release();
//
//   Reader r(body);
//   uint32_t peer_count;
//   absl::string_view peer_id;
//   HIVEMIND_RETURN_IF_ERROR(r.ReadU32(&peer_count));
//   HIVEMIND_RETURN_IF_ERROR(r.ReadBytes(&peer_id, kMaxPeerIdSize));
//   HIVEMIND_RETURN_IF_ERROR(r.ExpectEnd());
#ifndef HIVEMIND_WIRE_BUFFER_H_
#define HIVEMIND_WIRE_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "hivemind/export.h"

namespace hivemind {
namespace wire {

// Appends encoded values to a std::string: one it owns, or one the caller owns.
// Appending has no failure mode other than running out of memory.
//
// Thread safety: not thread-safe; use one Writer per thread. Cheap to create.
class HIVEMIND_EXPORT Writer {
 public:
  // Writes into a string owned by the Writer; take it with Release().
  Writer();
  // Appends to *dst, after whatever it already holds. `dst` is not owned and must
  // outlive the Writer.
  explicit Writer(std::string* dst);

  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Append `value` little-endian, in 1, 2, 4 and 8 bytes.
  void PutU8(uint8_t value);
  void PutU16(uint16_t value);
  void PutU32(uint32_t value);
  void PutU64(uint64_t value);

  // Writes the bits of `value` unchanged. Reader::ReadF32 rejects NaN and
  // infinities, so callers must not write them where a peer will read them.
  void PutF32(float value);

  // Writes value.size() as a u32, then the bytes. value.size() above UINT32_MAX is a
  // programmer error (checked, aborts the process).
  void PutBytes(absl::string_view value);

  // Writes the bytes with no length prefix; the reader must know the length.
  void PutRaw(absl::string_view value);

  // Size in bytes of the destination string (including, for the appending form,
  // what it held before).
  size_t size() const { return dst_->size(); }

  // Moves out the destination string and leaves it empty, so the Writer can be
  // reused. For the appending form this empties *dst, which callers usually read
  // directly instead.
  std::string Release();

 private:
  std::string owned_;
  std::string* dst_;  // &owned_, or the caller's string. Never null.
};

// Reads encoded values from a buffer it does not own, front to back.
//
// Every Read* call either succeeds, stores the value and advances, or fails with
// kDataLoss, leaves the output untouched and consumes nothing. Error messages name
// what was being read, its offset and the sizes involved. Nothing is read before
// the bytes are known to be present, so any input is safe.
//
// Thread safety: not thread-safe; use one Reader per thread. Cheap to create.
class HIVEMIND_EXPORT Reader {
 public:
  // `data` must outlive the Reader and every view it returns.
  explicit Reader(absl::string_view data) : data_(data) {}

  // A copy reads on independently from the same position (to look ahead).
  Reader(const Reader&) = default;
  Reader& operator=(const Reader&) = default;

  // Fixed-width integers. kDataLoss if fewer bytes than the width remain.
  absl::Status ReadU8(uint8_t* out);
  absl::Status ReadU16(uint16_t* out);
  absl::Status ReadU32(uint32_t* out);
  absl::Status ReadU64(uint64_t* out);

  // kDataLoss if fewer than 4 bytes remain, or if the value is NaN or +/-infinity
  // (no message field may carry one; rejecting here keeps them out of the math).
  absl::Status ReadF32(float* out);

  // Reads a u32 length n, then n bytes; *out points into the buffer. kDataLoss if
  // the prefix is truncated, if n > max_size, or if fewer than n bytes follow the
  // prefix. Both checks happen before anything is consumed.
  absl::Status ReadBytes(absl::string_view* out, uint32_t max_size);

  // Reads exactly n bytes with no prefix; *out points into the buffer. kDataLoss if
  // fewer than n remain.
  absl::Status ReadRaw(size_t n, absl::string_view* out);

  // Bytes not yet consumed.
  size_t remaining() const { return data_.size() - pos_; }

  // Bytes consumed so far (the offset of the next read).
  size_t position() const { return pos_; }

  // OK if every byte has been consumed; kDataLoss naming the count of trailing
  // bytes otherwise. Call it after the last field so trailing garbage is an error.
  absl::Status ExpectEnd() const;

 private:
  // OK if n bytes remain; else kDataLoss naming `what`.
  absl::Status Need(size_t n, absl::string_view what) const;
  // Like Need, then points *p at the n bytes and consumes them.
  absl::Status Take(size_t n, absl::string_view what, const char** p);

  absl::string_view data_;
  size_t pos_ = 0;
};

}  // namespace wire
}  // namespace hivemind

#endif  // HIVEMIND_WIRE_BUFFER_H_
