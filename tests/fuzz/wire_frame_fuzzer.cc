// libFuzzer target for the wire layer: frames, error bodies and the body Reader.
//
// Besides "never crash, never read out of bounds" (ASan/UBSan do that part) it
// checks two properties and traps when one fails:
//  - strictness: a frame or error body that parses re-encodes to the same bytes,
//    so no two byte strings are accepted as the same message;
//  - Reader atomicity: a failed read consumes nothing and returns kDataLoss.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "hivemind/wire/buffer.h"
#include "hivemind/wire/error_body.h"
#include "hivemind/wire/frame.h"

namespace {

using hivemind::wire::EncodeErrorBody;
using hivemind::wire::EncodeFrame;
using hivemind::wire::FrameLimits;
using hivemind::wire::FrameView;
using hivemind::wire::kFlagChecksum;
using hivemind::wire::kFrameHeaderSize;
using hivemind::wire::MessageType;
using hivemind::wire::ParseErrorBody;
using hivemind::wire::ParseFrame;
using hivemind::wire::Reader;

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

void FuzzErrorBody(absl::string_view body) {
  absl::StatusOr<absl::Status> parsed = ParseErrorBody(body);
  if (!parsed.ok()) {
    Check(parsed.status().code() == absl::StatusCode::kDataLoss);
    return;
  }
  Check(!parsed->ok());
  Check(EncodeErrorBody(*parsed) == body);
}

void FuzzFrame(absl::string_view data) {
  // A small limit so that the over-limit path is reachable with short inputs.
  for (const FrameLimits& limits : {FrameLimits{}, FrameLimits{16}}) {
    absl::StatusOr<FrameView> frame = ParseFrame(data, limits);
    if (!frame.ok()) {
      const absl::StatusCode code = frame.status().code();
      Check(code == absl::StatusCode::kDataLoss ||
            code == absl::StatusCode::kUnimplemented);
      continue;
    }
    const bool checksum = (frame->header.flags & kFlagChecksum) != 0;
    Check(frame->body.data() == data.data() + kFrameHeaderSize);
    Check(EncodeFrame(frame->header.type, frame->header.request_id, frame->body,
                      checksum) == data);
    if (frame->header.type == MessageType::kError) FuzzErrorBody(frame->body);
  }
}

// Runs one read and checks that a failure left the Reader where it was.
template <typename ReadFn>
void Step(Reader* reader, ReadFn read) {
  const size_t before = reader->remaining();
  const absl::Status status = read();
  if (!status.ok()) {
    Check(status.code() == absl::StatusCode::kDataLoss);
    Check(reader->remaining() == before);
  } else {
    Check(reader->remaining() <= before);
  }
}

// A fixed mix of every read, repeated until the input is used up or stops
// advancing; the reads cover every width and both length-checked byte forms.
void FuzzReader(absl::string_view data) {
  Reader reader(data);
  uint8_t u8 = 0;
  uint16_t u16 = 0;
  uint32_t u32 = 0;
  uint64_t u64 = 0;
  float f32 = 0;
  absl::string_view bytes;
  while (true) {
    const size_t start = reader.remaining();
    Step(&reader, [&] { return reader.ReadU8(&u8); });
    Step(&reader, [&] { return reader.ReadU16(&u16); });
    Step(&reader, [&] { return reader.ReadU32(&u32); });
    Step(&reader, [&] { return reader.ReadU64(&u64); });
    Step(&reader, [&] { return reader.ReadF32(&f32); });
    Step(&reader, [&] { return reader.ReadBytes(&bytes, 64); });
    Step(&reader, [&] { return reader.ReadBytes(&bytes, UINT32_MAX); });
    Step(&reader, [&] { return reader.ReadRaw(u8, &bytes); });
    Step(&reader, [&] { return reader.ExpectEnd(); });
    if (reader.remaining() == 0 || reader.remaining() == start) break;
  }
  Check(reader.ExpectEnd().ok() == (reader.remaining() == 0));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  FuzzFrame(input);
  FuzzErrorBody(input);
  FuzzReader(input);
  return 0;
}
