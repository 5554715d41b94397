// Codec throughput against memcpy in the same run. Bytes/s count the float32 input
// (4 bytes per element) for every benchmark, so the numbers compare directly:
//   BM_Memcpy/N           copy N bytes of floats (the reference)
//   BM_Encode/<codec>/N   encode N bytes of floats
//   BM_DecodeAdd/<codec>/N  acc += w * decode(payload), the reducer's hot path
// Counter `ratio` is input bytes / payload bytes. Single thread.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "hivemind/codec/codec.h"
#include "hivemind/codec/factory.h"

namespace {

const char* const kCodecs[] = {
    "none",      "fp16",       "bf16",       "scaled_fp16", "uniform8",
    "quantile8", "blockwise8", "blockwise4", "blockwise2",  "blockwise4+zstd"};

std::vector<float> TestData(size_t n) {
  std::vector<float> x(n);
  uint32_t state = 42;
  for (size_t i = 0; i < n; ++i) {
    state = state * 1664525u + 1013904223u;
    x[i] = static_cast<float>(static_cast<int32_t>(state)) * 4.6566e-10f;
  }
  return x;
}

void BM_Memcpy(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0)) / sizeof(float);
  std::vector<float> src = TestData(n), dst(n);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), n * sizeof(float));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

std::unique_ptr<hivemind::Codec> Make(const std::string& spec) {
  return std::move(hivemind::CreateCodecFromSpec(spec)).value();
}

void BM_Encode(benchmark::State& state, const std::string& spec) {
  const size_t n = static_cast<size_t>(state.range(0)) / sizeof(float);
  const std::vector<float> x = TestData(n);
  auto codec = Make(spec);
  std::vector<char> out(codec->MaxEncodedSize(n));
  size_t size = 0;
  for (auto _ : state) {
    auto written = codec->Encode(x, absl::MakeSpan(out));
    if (!written.ok()) state.SkipWithError(written.status().ToString().c_str());
    size = written.value_or(1);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
  state.counters["ratio"] = static_cast<double>(state.range(0)) / size;
}

void BM_DecodeAdd(benchmark::State& state, const std::string& spec) {
  const size_t n = static_cast<size_t>(state.range(0)) / sizeof(float);
  std::string payload;
  if (!Make(spec)->Encode(TestData(n), &payload).ok()) std::abort();
  std::vector<float> acc(n, 0.0f);
  for (auto _ : state) {
    absl::Status s = hivemind::DecodeAdd(payload, 0.5f, absl::MakeSpan(acc));
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
  state.counters["ratio"] = static_cast<double>(state.range(0)) / payload.size();
}

void RegisterAll() {
  const int64_t sizes[] = {1 << 20, 64 << 20};
  auto* memcpy_bm = benchmark::RegisterBenchmark("BM_Memcpy", BM_Memcpy);
  for (int64_t size : sizes) memcpy_bm->Arg(size);
  for (const char* spec : kCodecs) {
    auto* e = benchmark::RegisterBenchmark((std::string("BM_Encode/") + spec).c_str(),
                                           BM_Encode, std::string(spec));
    auto* d = benchmark::RegisterBenchmark((std::string("BM_DecodeAdd/") + spec).c_str(),
                                           BM_DecodeAdd, std::string(spec));
    for (int64_t size : sizes) {
      e->Arg(size);
      d->Arg(size);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
