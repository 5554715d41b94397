// Builds against the installed public headers and shared library only: encodes a
// frame and parses it back. Exits 0 iff the round trip preserves every field.
#include <cstdio>
#include <string>

#include "hivemind/hivemind.h"

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "install_consumer: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main() {
  namespace wire = hivemind::wire;
  const std::string frame = wire::EncodeFrame(wire::MessageType::kPing, 7, "hi", true);
  if (frame.size() != wire::kFrameHeaderSize + 2) {
    return Fail("EncodeFrame returned " + std::to_string(frame.size()) + " bytes");
  }
  const absl::StatusOr<wire::FrameView> parsed = wire::ParseFrame(frame);
  if (!parsed.ok()) return Fail("ParseFrame: " + parsed.status().ToString());
  const wire::FrameHeader& header = parsed->header;
  if (header.type != wire::MessageType::kPing) return Fail("type differs");
  if (header.request_id != 7) return Fail("request_id differs");
  if ((header.flags & wire::kFlagChecksum) == 0) return Fail("checksum flag lost");
  if (header.body_size != 2) return Fail("body_size differs");
  if (parsed->body != "hi") return Fail("body differs");
  std::printf("install_consumer: round trip OK\n");
  return 0;
}
