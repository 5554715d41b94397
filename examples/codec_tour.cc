// A tour of the codecs: encodes one buffer with each codec spec given on the command
// line (or a default list) and prints the payload size, the compression ratio and the
// largest and mean absolute error after decoding.
//
//   codec_tour [--numel=N] [SPEC...]     e.g. codec_tour blockwise4 "fp16+zstd"
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "hivemind/codec/codec.h"
#include "hivemind/codec/factory.h"

namespace {

void Report(const std::string& spec, const std::vector<float>& x) {
  auto codec = hivemind::CreateCodecFromSpec(spec);
  if (!codec.ok()) {
    std::printf("%-28s %s\n", spec.c_str(), codec.status().ToString().c_str());
    return;
  }
  std::string payload;
  std::vector<float> y(x.size());
  absl::Status s = (*codec)->Encode(x, &payload);
  if (s.ok()) s = hivemind::Decode(payload, absl::MakeSpan(y));
  if (!s.ok()) {
    std::printf("%-28s %s\n", spec.c_str(), s.ToString().c_str());
    return;
  }
  double max_err = 0, sum_err = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = std::fabs(double{x[i]} - y[i]);
    max_err = std::max(max_err, e);
    sum_err += e;
  }
  std::printf("%-28s %12zu %8.2fx %12.3g %12.3g\n", spec.c_str(), payload.size(),
              4.0 * x.size() / payload.size(), max_err, sum_err / x.size());
}

}  // namespace

int main(int argc, char** argv) {
  size_t numel = 1 << 20;
  std::vector<std::string> specs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--numel=", 0) == 0) {
      numel = std::strtoull(arg.c_str() + 8, nullptr, 10);
    } else {
      specs.push_back(arg);
    }
  }
  if (specs.empty()) {
    specs = {"none",      "fp16",       "bf16",       "scaled_fp16", "uniform8",
             "quantile8", "blockwise8", "blockwise4", "blockwise2",  "blockwise4+zstd"};
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(numel);
  for (float& v : x) v = normal(rng);
  std::printf("%zu float32 values from N(0, 1)\n", numel);
  std::printf("%-28s %12s %9s %12s %12s\n", "codec", "bytes", "ratio", "max err",
              "mean err");
  for (const std::string& spec : specs) Report(spec, x);
  return 0;
}
