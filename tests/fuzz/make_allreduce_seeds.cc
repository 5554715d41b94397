// Writes valid all-reduce part and result bodies (with small payloads) into a
// directory: the seed corpus of allreduce_messages_fuzzer. Usage: make_allreduce_seeds
// DIR
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "averaging/messages.h"
#include "hivemind/codec/factory.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::vector<float> values(64, 0.5f);
  int index = 0;
  for (const char* spec : {"none", "blockwise4:block=16", "fp16+zstd"}) {
    std::string payload;
    if (!(*hivemind::CreateCodecFromSpec(spec))->Encode(values, &payload).ok()) return 1;
    std::string part, result;
    hivemind::internal::WritePartHeader({"group", 1, 2, 3, 0.5f}, &part);
    hivemind::internal::WriteResultHeader({"group", 2, 3}, &result);
    for (const std::string& body : {part + payload, result + payload}) {
      std::ofstream(std::string(argv[1]) + "/seed" + std::to_string(index++),
                    std::ios::binary)
          << body;
    }
  }
  return 0;
}
