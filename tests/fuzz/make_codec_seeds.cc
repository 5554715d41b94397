// Writes one valid payload per codec (and a few zstd ones) into a directory: the
// seed corpus of codec_fuzzer. Usage: make_codec_seeds DIR
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "hivemind/codec/factory.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  std::vector<float> values(300);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<float>((i * 37) % 101) / 17.0f - 3.0f;
  }
  const char* specs[] = {"none",
                         "fp16",
                         "bf16",
                         "scaled_fp16:block=64",
                         "uniform8",
                         "quantile8",
                         "blockwise8:block=64",
                         "blockwise4:block=64",
                         "blockwise2:block=64",
                         "blockwise4:block=64+zstd",
                         "fp16+zstd",
                         "uniform8+zstd"};
  int index = 0;
  for (const char* spec : specs) {
    auto codec = hivemind::CreateCodecFromSpec(spec);
    std::string payload;
    if (!codec.ok() || !(*codec)->Encode(values, &payload).ok()) return 1;
    std::ofstream(std::string(argv[1]) + "/seed" + std::to_string(index++),
                  std::ios::binary)
        << payload;
  }
  return 0;
}
