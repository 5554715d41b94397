// make_wire_seeds <dir>: writes a seed corpus for wire_frame_fuzzer into <dir>.
//
// One valid frame per message type with and without a checksum, empty bodies, an
// error frame and a bare error body, and a body built with the Writer, so that the
// fuzzer starts from inputs that reach past the header checks. <dir> must exist.
// Exit status 0 on success, 1 (with a message on stderr) on any failure.
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "hivemind/wire/buffer.h"
#include "hivemind/wire/error_body.h"
#include "hivemind/wire/frame.h"

namespace {

using hivemind::wire::EncodeErrorBody;
using hivemind::wire::EncodeFrame;
using hivemind::wire::MessageType;
using hivemind::wire::MessageTypeName;
using hivemind::wire::Writer;

constexpr MessageType kAllTypes[] = {
    MessageType::kError,
    MessageType::kPing,
    MessageType::kPong,
    MessageType::kAllReducePart,
    MessageType::kAllReduceResult,
    MessageType::kJoinRequest,
    MessageType::kJoinResponse,
    MessageType::kGroupAssembled,
    MessageType::kStateRequest,
    MessageType::kStateChunk,
};

// A body exercising every Reader primitive, in the order the fuzzer reads them.
std::string PrimitivesBody() {
  Writer w;
  w.PutU8(4);
  w.PutU16(0x1234);
  w.PutU32(7);
  w.PutU64(0xfeedfacecafebeefu);
  w.PutF32(0.25f);
  w.PutBytes("peer-0");
  w.PutBytes("tensor-part");
  w.PutRaw("abcd");
  return w.Release();
}

std::vector<std::pair<std::string, std::string>> Seeds() {
  std::vector<std::pair<std::string, std::string>> seeds;
  uint64_t request_id = 1;
  for (MessageType type : kAllTypes) {
    const std::string name(MessageTypeName(type));
    const std::string body = PrimitivesBody();
    seeds.emplace_back(name + "_checksum", EncodeFrame(type, request_id++, body, true));
    seeds.emplace_back(name + "_plain", EncodeFrame(type, request_id++, body, false));
    seeds.emplace_back(name + "_empty", EncodeFrame(type, request_id++, "", false));
  }
  const std::string error = EncodeErrorBody(absl::UnavailableError("peer went away"));
  seeds.emplace_back("error_frame", EncodeFrame(MessageType::kError, 9, error, true));
  seeds.emplace_back("error_body", error);
  seeds.emplace_back("primitives_body", PrimitivesBody());
  return seeds;
}

bool WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  return out.good();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output-dir>\n", argv[0]);
    return 1;
  }
  const std::string dir = argv[1];
  for (const auto& [name, contents] : Seeds()) {
    const std::string path = dir + "/" + name + ".bin";
    if (!WriteFile(path, contents)) {
      std::fprintf(stderr, "make_wire_seeds: cannot write %s\n", path.c_str());
      return 1;
    }
  }
  return 0;
}
