// End-to-end benchmark: hivemind's butterfly all-reduce (AllReducer::Run) against
// Gloo's CPU all-reduce, in the same processes, on the same vectors, over the same
// network. One process per rank:
//
//   allreduce_vs_gloo --rank=R --peers=N --rendezvous_dir=DIR [--numel=...]
//                     [--codec=none|blockwise8|blockwise4+ef|...] [--listen_host=IP]
//
// bench/run_allreduce.sh starts N ranks on loopback; bench/wan_allreduce.sh starts
// them in network namespaces behind rate-limited links (bench/wan.sh).
//
// Rendezvous: each rank writes "address peer_id" to DIR/endpoint.R; Gloo contexts
// connect through gloo::rendezvous::FileStores in DIR/gloo-<name>. A "control" Gloo
// context provides the barriers before hivemind's rounds and gathers the per-rank
// figures to rank 0; each Gloo algorithm runs (barriers included) on its own context.
//
// A round's time is the slowest rank's time from leaving the barrier to having the
// averaged vector; figures are medians over --repeats rounds after --warmup untimed
// ones. Gloo sums, so its rounds include the division by N (both produce the mean).
// With --gloo_algorithm=auto each of Gloo's three CPU all-reduces gets one trial round
// (after its warm-up) and the fastest is timed.
//
// Rank 0 prints a summary; its last line is `ratio_vs_gloo=<median hivemind / median
// gloo>` (mode both). Exits nonzero if any rank failed a round or a check.
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "gloo/allgather.h"
#include "gloo/allreduce.h"
#include "gloo/allreduce_halving_doubling.h"
#include "gloo/allreduce_ring_chunked.h"
#include "gloo/barrier.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/file_store.h"
#include "gloo/transport/tcp/device.h"
#include "hivemind/averaging/allreduce.h"
#include "hivemind/averaging/group.h"
#include "hivemind/codec/factory.h"
#include "hivemind/net/endpoint.h"

ABSL_FLAG(int, rank, 0, "This process's rank, in [0, peers).");
ABSL_FLAG(int, peers, 2, "Number of ranks (processes), at least 2.");
ABSL_FLAG(int64_t, numel, 25'000'000, "float32 elements to average (default 100 MB).");
ABSL_FLAG(std::string, codec, "none",
          "hivemind codec spec (see hivemind/codec/factory.h); a '+ef' suffix adds "
          "error feedback (AllReduceOptions::residual). Gloo always sends raw fp32.");
ABSL_FLAG(int, repeats, 5, "Timed rounds of each library.");
ABSL_FLAG(int, warmup, 1, "Untimed rounds of each library before the timed ones.");
ABSL_FLAG(std::string, listen_host, "127.0.0.1",
          "This rank's IP address; both libraries listen there.");
ABSL_FLAG(std::string, rendezvous_dir, "",
          "Directory shared by all ranks (endpoint addresses, Gloo FileStore).");
ABSL_FLAG(std::string, mode, "both", "both, hivemind or gloo.");
ABSL_FLAG(std::string, gloo_algorithm, "auto",
          "ring (gloo::allreduce, as torch.distributed), ring_chunked, "
          "halving_doubling, or auto (a trial round of each, then the fastest).");
ABSL_FLAG(double, link_mbit, 0,
          "Per-host link rate in Mbit/s, each way. When > 0, print the link-bound "
          "time 2*M*(n-1)/(n*B) and the fraction of it each library achieves.");
ABSL_FLAG(double, timeout_s, 180, "Deadline of one round, of either library.");
ABSL_FLAG(int, part_size, 0,
          "hivemind: AllReduceOptions::part_size in elements; 0 keeps the default.");
ABSL_FLAG(int, max_parts_in_flight, 0,
          "hivemind: AllReduceOptions::max_parts_in_flight; 0 keeps the default.");
ABSL_FLAG(int, send_buffer, 0,
          "hivemind: EndpointOptions::send_buffer_bytes (0: the kernel's autotuning).");
ABSL_FLAG(bool, checksum, false, "hivemind: EndpointOptions::checksum_bodies.");
ABSL_FLAG(bool, encrypt, true,
          "hivemind: EndpointOptions::encrypt (CURVE on every connection; Gloo sends "
          "plain text, so --noencrypt compares like with like on a trusted network).");
ABSL_FLAG(bool, retain_freed_memory, true,
          "Call hivemind::RetainFreedMemory() at start (glibc keeps freed memory, so "
          "ZeroMQ's received messages do not fault in fresh pages every round).");
ABSL_FLAG(bool, verbose, false, "Log every step and round to stderr.");

namespace {

using Clock = std::chrono::steady_clock;

// --verbose: "rank R +SECONDS what" on stderr.
void Log(const char* format, ...) __attribute__((format(printf, 1, 2)));
void Log(const char* format, ...) {
  static const Clock::time_point kStart = Clock::now();
  if (!absl::GetFlag(FLAGS_verbose)) return;
  char line[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(line, sizeof(line), format, args);
  va_end(args);
  std::fprintf(stderr, "rank %d +%.3fs %s\n", absl::GetFlag(FLAGS_rank),
               std::chrono::duration<double>(Clock::now() - kStart).count(), line);
}

// CPU time of every thread of this process (ZeroMQ's and Gloo's I/O threads too).
double ProcessCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

struct Config {
  int rank = 0;
  int peers = 2;
  int64_t numel = 0;
  std::string codec_spec;  // without "+ef"
  bool error_feedback = false;
  int repeats = 0;
  int warmup = 0;
  std::string listen_host;
  std::string dir;
  bool run_hivemind = true;
  bool run_gloo = true;
  std::string gloo_algorithm;
  double link_mbit = 0;
  double timeout_s = 0;
};

// ---------------------------------------------------------------------------------
// Inputs and checks.

// Rank r's value at index i: a hash of (r, i) mapped onto [-1, 1) in steps of 2^-23,
// so every input is exact in float32 and the exact mean is cheap to recompute.
float InputValue(int rank, uint64_t i) {
  uint64_t h = i * 0x9E3779B97F4A7C15ull ^ (uint64_t(rank) + 1) * 0xD1B54A32D192ED03ull;
  h ^= h >> 31;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 29;
  return static_cast<float>(static_cast<double>(h >> 40) / double(1 << 23) - 1.0);
}

void FillInputs(int rank, std::vector<float>* values) {
  float* v = values->data();
  for (uint64_t i = 0; i < values->size(); ++i) v[i] = InputValue(rank, i);
}

// Indices to check: both ends, around every span boundary, and 4096 spread evenly.
std::vector<uint64_t> SampleIndices(uint64_t numel, int peers) {
  std::vector<uint64_t> idx;
  for (int j = 0; j <= peers; ++j) {
    uint64_t b = numel * j / peers;
    for (uint64_t k = b >= 2 ? b - 2 : 0; k < b + 2 && k < numel; ++k) idx.push_back(k);
  }
  for (uint64_t k = 0; k < 4096; ++k) idx.push_back((numel * k / 4096 + k * 7) % numel);
  std::sort(idx.begin(), idx.end());
  idx.erase(std::unique(idx.begin(), idx.end()), idx.end());
  return idx;
}

// Largest |result - exact mean| over the sampled indices. Inputs lie in [-1, 1), so
// this is also the error relative to the data's scale.
double MaxError(const std::vector<float>& result, int peers,
                const std::vector<uint64_t>& indices) {
  double worst = 0;
  for (uint64_t i : indices) {
    double exact = 0;
    for (int r = 0; r < peers; ++r) exact += InputValue(r, i);
    exact /= peers;
    double err = std::fabs(static_cast<double>(result[i]) - exact);
    if (std::isnan(err)) return NAN;
    worst = std::max(worst, err);
  }
  return worst;
}

// A 32-bit digest of the whole vector (exact in a double), to compare across ranks.
uint32_t Digest(const std::vector<float>& values) {
  uint64_t h = 1469598103934665603ull;
  const uint32_t* w = reinterpret_cast<const uint32_t*>(values.data());
  for (size_t i = 0; i < values.size(); ++i) h = (h ^ w[i]) * 1099511628211ull;
  return static_cast<uint32_t>(h ^ (h >> 32));
}

double Median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// std::max that lets a NaN through (a NaN error must not read as a small one).
double MaxOrNan(double a, double b) {
  return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b);
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Wall and process CPU time since construction: one round of either library.
struct RoundClock {
  Clock::time_point wall = Clock::now();
  double cpu = ProcessCpuSeconds();
  double WallSeconds() const { return Seconds(Clock::now() - wall); }
  double CpuSeconds() const { return ProcessCpuSeconds() - cpu; }
};

// ---------------------------------------------------------------------------------
// Gloo: connection, barrier, gather.

// A full mesh of Gloo pairs on a device of its own, rendezvous in DIR/gloo-<name>.
std::shared_ptr<gloo::Context> ConnectGloo(const Config& cfg, const std::string& name) {
  gloo::transport::tcp::attr attr;
  attr.hostname = cfg.listen_host;
  auto device = gloo::transport::tcp::CreateDevice(attr);
  std::string store_dir = cfg.dir + "/gloo-" + name;
  mkdir(store_dir.c_str(), 0755);  // every rank tries; EEXIST is fine
  Log("gloo: connecting context %s", name.c_str());
  gloo::rendezvous::FileStore store(store_dir);
  auto context = std::make_shared<gloo::rendezvous::Context>(cfg.rank, cfg.peers);
  context->setTimeout(std::chrono::milliseconds(int64_t(cfg.timeout_s * 1000)));
  context->connectFullMesh(store, device);
  Log("gloo: context %s connected", name.c_str());
  return context;
}

constexpr uint32_t kBarrierTag = 0x7fff0001;
constexpr uint32_t kAllreduceTag = 0x7fff0002;
constexpr uint32_t kGatherTag = 0x7fff0003;

void Barrier(const std::shared_ptr<gloo::Context>& context) {
  gloo::BarrierOptions opts(context);
  opts.setTag(kBarrierTag);
  gloo::barrier(opts);
}

// Every rank's `mine` (same length everywhere), indexed by rank.
std::vector<std::vector<double>> GatherAll(const std::shared_ptr<gloo::Context>& context,
                                           const std::vector<double>& mine) {
  const int n = context->size;
  std::vector<double> in = mine, all(mine.size() * n);
  gloo::AllgatherOptions opts(context);
  opts.setInput(in.data(), in.size());
  opts.setOutput(all.data(), all.size());
  opts.setTag(kGatherTag);
  gloo::allgather(opts);
  std::vector<std::vector<double>> out(n);
  for (int r = 0; r < n; ++r) {
    out[r].assign(all.begin() + r * mine.size(), all.begin() + (r + 1) * mine.size());
  }
  return out;
}

// Per repeat, the slowest rank's time.
std::vector<double> SlowestPerRepeat(const std::vector<std::vector<double>>& all,
                                     int repeats) {
  std::vector<double> out(repeats, 0.0);
  for (const auto& rank : all) {
    for (int k = 0; k < repeats; ++k) out[k] = std::max(out[k], rank[k]);
  }
  return out;
}

// ---------------------------------------------------------------------------------
// Gloo all-reduce rounds. Each object is built once (buffers registered with the
// pairs), then run repeatedly: the way Gloo is meant to be used.

class GlooRound {
 public:
  virtual ~GlooRound() = default;
  virtual void Run() = 0;
};

class GlooAlgorithmRound : public GlooRound {
 public:
  explicit GlooAlgorithmRound(std::unique_ptr<gloo::Algorithm> algorithm)
      : algorithm_(std::move(algorithm)) {}
  void Run() override { algorithm_->run(); }

 private:
  std::unique_ptr<gloo::Algorithm> algorithm_;
};

// gloo::allreduce with the RING algorithm: what torch.distributed's Gloo backend
// calls for dense CPU tensors.
class GlooRingRound : public GlooRound {
 public:
  GlooRingRound(std::shared_ptr<gloo::Context> context, float* data, size_t count)
      : context_(std::move(context)), data_(data), count_(count) {}
  void Run() override {
    gloo::AllreduceOptions opts(context_);
    opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
    opts.setOutput(data_, count_);
    opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(
        &gloo::sum<float>));
    opts.setTag(kAllreduceTag);
    gloo::allreduce(opts);
  }

 private:
  std::shared_ptr<gloo::Context> context_;
  float* data_;
  size_t count_;
};

std::unique_ptr<GlooRound> MakeGlooRound(const std::string& name,
                                         const std::shared_ptr<gloo::Context>& context,
                                         std::vector<float>* data) {
  int count = static_cast<int>(data->size());
  if (name == "ring") {
    return std::make_unique<GlooRingRound>(context, data->data(), data->size());
  }
  if (name == "ring_chunked") {
    return std::make_unique<GlooAlgorithmRound>(
        std::make_unique<gloo::AllreduceRingChunked<float>>(
            context, std::vector<float*>{data->data()}, count));
  }
  if (name == "halving_doubling") {
    return std::make_unique<GlooAlgorithmRound>(
        std::make_unique<gloo::AllreduceHalvingDoubling<float>>(
            context, std::vector<float*>{data->data()}, count));
  }
  return nullptr;
}

// One timed Gloo round (sum, then divide: the mean, as hivemind computes), after a
// barrier on the algorithm's own context.
// `cpu` (may be null) receives the CPU time of the whole process in the round.
double TimeGlooRound(const std::shared_ptr<gloo::Context>& context, GlooRound* round,
                     const Config& cfg, std::vector<float>* data, double* cpu = nullptr) {
  FillInputs(cfg.rank, data);
  Barrier(context);
  const RoundClock clock;
  round->Run();
  const float scale = 1.0f / cfg.peers;
  for (float& x : *data) x *= scale;
  const double seconds = clock.WallSeconds();
  const double cpu_s = clock.CpuSeconds();
  Log("gloo: round %.4fs cpu=%.4fs", seconds, cpu_s);
  if (cpu != nullptr) *cpu = cpu_s;
  return seconds;
}

struct GlooResult {
  std::string algorithm;
  std::vector<std::pair<std::string, double>> trials;  // slowest rank's time
  std::vector<double> seconds;                         // this rank, per repeat
  std::vector<double> cpu;  // this process's CPU time, per repeat
  double max_error = 0;
  uint32_t digest = 0;
};

// One algorithm on a context (and device) of its own, built once. Two things this
// Gloo (0.0~git20220518) did here otherwise: gloo::allreduce's RING on a context
// where an AllgatherRing had run took 3.2 s for a 4 MB vector on 4 loopback ranks
// (15 s for 16 MB) instead of 0.01 s; and with algorithms destroyed and rebuilt on
// shared contexts, 1 run in 2 on the WAN failed with "Connection closed by peer"
// (probably a slot-based algorithm's trailing notification reaching a slot that no
// longer exists).
struct GlooCandidate {
  std::shared_ptr<gloo::Context> context;
  std::unique_ptr<GlooRound> round;
};

GlooCandidate MakeCandidate(const Config& cfg, const std::string& name,
                            std::vector<float>* data) {
  GlooCandidate candidate;
  candidate.context = ConnectGloo(cfg, name);
  candidate.round = MakeGlooRound(name, candidate.context, data);
  for (int w = 0; w < cfg.warmup; ++w) {
    TimeGlooRound(candidate.context, candidate.round.get(), cfg, data);
  }
  return candidate;
}

// With "auto", builds each algorithm (with its warm-up) and runs one trial round of
// each; every rank picks the same one from the trial times gathered on `control`.
// Returns the chosen one; the others stay in `all` (see GlooCandidate).
GlooCandidate* ChooseGlooAlgorithm(const std::shared_ptr<gloo::Context>& control,
                                   const Config& cfg, std::vector<float>* data,
                                   std::map<std::string, GlooCandidate>* all,
                                   GlooResult* result) {
  if (cfg.gloo_algorithm != "auto") {
    result->algorithm = cfg.gloo_algorithm;
    return &((*all)[cfg.gloo_algorithm] = MakeCandidate(cfg, cfg.gloo_algorithm, data));
  }
  double best_s = INFINITY;
  for (const char* name : {"ring", "ring_chunked", "halving_doubling"}) {
    Log("gloo: trial of %s", name);
    GlooCandidate& candidate = (*all)[name] = MakeCandidate(cfg, name, data);
    double mine = TimeGlooRound(candidate.context, candidate.round.get(), cfg, data);
    double slowest = 0;
    for (const auto& r : GatherAll(control, {mine})) slowest = std::max(slowest, r[0]);
    result->trials.emplace_back(name, slowest);
    if (slowest < best_s) best_s = slowest, result->algorithm = name;
  }
  return &(*all)[result->algorithm];
}

// `all` keeps every Gloo object alive until the caller's final barrier.
GlooResult RunGloo(const std::shared_ptr<gloo::Context>& control, const Config& cfg,
                   std::vector<float>* data, std::map<std::string, GlooCandidate>* all) {
  GlooResult result;
  GlooCandidate* chosen = ChooseGlooAlgorithm(control, cfg, data, all, &result);
  for (int k = 0; k < cfg.repeats; ++k) {
    double cpu = 0;
    result.seconds.push_back(
        TimeGlooRound(chosen->context, chosen->round.get(), cfg, data, &cpu));
    result.cpu.push_back(cpu);
  }
  result.max_error = MaxError(*data, cfg.peers, SampleIndices(data->size(), cfg.peers));
  result.digest = Digest(*data);
  return result;
}

// ---------------------------------------------------------------------------------
// hivemind: endpoint, rendezvous through files, rounds.

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << contents;
    if (!out.good()) return absl::UnavailableError("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError("cannot rename " + tmp);
  }
  return absl::OkStatus();
}

// Waits until every rank has published "address peer_id"; returns them by rank.
absl::StatusOr<std::vector<hivemind::GroupMember>> WaitForMembers(const Config& cfg) {
  std::vector<hivemind::GroupMember> members(cfg.peers);
  auto deadline = Clock::now() + std::chrono::milliseconds(int64_t(cfg.timeout_s * 1000));
  for (int r = 0; r < cfg.peers; ++r) {
    std::string path = cfg.dir + "/endpoint." + std::to_string(r);
    while (true) {
      std::ifstream in(path);
      if (in >> members[r].address >> members[r].peer_id) break;
      if (Clock::now() > deadline) {
        return absl::DeadlineExceededError("rank " + std::to_string(r) +
                                           " never published " + path);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return members;
}

struct HivemindResult {
  std::vector<double> seconds;  // this rank, per repeat
  uint64_t bytes_sent = 0;      // last round's report
  double encode_s = 0;          // medians over repeats, this rank
  double reduce_s = 0;
  double cpu_s = 0;  // this process's CPU time in a round, median
  double max_error = 0;
  uint32_t digest = 0;
  int failures = 0;  // rounds that failed or averaged only part of the vector
};

// Returns false if the round failed or left any span (partly) unaveraged; prints why.
bool CheckReport(const Config& cfg, const std::string& round,
                 const absl::StatusOr<hivemind::AllReduceReport>& report) {
  if (!report.ok()) {
    std::fprintf(stderr, "rank %d: hivemind round %s failed: %s\n", cfg.rank,
                 round.c_str(), report.status().ToString().c_str());
    return false;
  }
  bool ok = true;
  for (const auto& span : report->spans) {
    if (span.status.ok() && span.parts_averaged == span.parts) continue;
    std::fprintf(stderr,
                 "rank %d: round %s: span of reducer %d [%llu, %llu) %s, %llu/%llu parts "
                 "averaged\n",
                 cfg.rank, round.c_str(), span.reducer, (unsigned long long)span.begin,
                 (unsigned long long)span.end, span.status.ToString().c_str(),
                 (unsigned long long)span.parts_averaged, (unsigned long long)span.parts);
    ok = false;
  }
  for (const auto& [member, status] : report->excluded) {
    std::fprintf(stderr, "rank %d: round %s: excluded sender %d: %s\n", cfg.rank,
                 round.c_str(), member, status.ToString().c_str());
    ok = false;
  }
  return ok;
}

class HivemindBench {
 public:
  HivemindBench(const Config& cfg, std::shared_ptr<gloo::Context> context)
      : cfg_(cfg), context_(std::move(context)) {}

  absl::Status Setup() {
    hivemind::EndpointOptions options;
    options.listen_address = "tcp://" + cfg_.listen_host + ":0";
    options.checksum_bodies = absl::GetFlag(FLAGS_checksum);
    options.send_buffer_bytes = absl::GetFlag(FLAGS_send_buffer);
    options.encrypt = absl::GetFlag(FLAGS_encrypt);
    auto endpoint = hivemind::Endpoint::Create(options);
    if (!endpoint.ok()) return endpoint.status();
    endpoint_ = std::move(*endpoint);
    reducer_ = std::make_unique<hivemind::AllReducer>(endpoint_.get());
    absl::Status st =
        WriteFileAtomically(cfg_.dir + "/endpoint." + std::to_string(cfg_.rank),
                            endpoint_->address() + " " + endpoint_->id() + "\n");
    if (!st.ok()) return st;
    auto members = WaitForMembers(cfg_);
    if (!members.ok()) return members.status();
    members_ = std::move(*members);
    if (cfg_.codec_spec != "none") {
      auto codec = hivemind::CreateCodecFromSpec(cfg_.codec_spec);
      if (!codec.ok()) return codec.status();
      codec_ = std::move(*codec);
    }
    if (cfg_.error_feedback) residual_.assign(cfg_.numel, 0.0f);
    return absl::OkStatus();
  }

  HivemindResult Run(std::vector<float>* data) {
    HivemindResult result;
    std::vector<double> encode, reduce, cpu;
    for (int k = 0; k < cfg_.warmup + cfg_.repeats; ++k) {
      bool timed = k >= cfg_.warmup;
      std::string round = timed ? "repeat" + std::to_string(k - cfg_.warmup)
                                : "warmup" + std::to_string(k);
      FillInputs(cfg_.rank, data);
      Barrier(context_);
      const RoundClock clock;
      auto report =
          reducer_->Run(Group(round), cfg_.rank, absl::MakeSpan(*data), Options());
      const double seconds = clock.WallSeconds();
      const double cpu_s = clock.CpuSeconds();
      Log("hivemind: %s %.4fs cpu=%.4fs", round.c_str(), seconds, cpu_s);
      if (!CheckReport(cfg_, round, report)) ++result.failures;
      if (!timed) continue;
      result.seconds.push_back(seconds);
      cpu.push_back(cpu_s);
      if (report.ok()) {
        result.bytes_sent = report->bytes_sent;
        encode.push_back(absl::ToDoubleSeconds(report->encode_time));
        reduce.push_back(absl::ToDoubleSeconds(report->reduce_time));
      }
    }
    result.encode_s = Median(encode);
    result.reduce_s = Median(reduce);
    result.cpu_s = Median(cpu);
    result.max_error =
        MaxError(*data, cfg_.peers, SampleIndices(data->size(), cfg_.peers));
    result.digest = Digest(*data);
    return result;
  }

 private:
  hivemind::GroupInfo Group(const std::string& round) const {
    hivemind::GroupInfo group;
    group.group_id = "allreduce_vs_gloo/" + round;
    group.members = members_;
    return group;
  }

  hivemind::AllReduceOptions Options() {
    hivemind::AllReduceOptions options;
    options.codec = codec_.get();
    options.residual = cfg_.error_feedback ? &residual_ : nullptr;
    options.timeout = absl::Seconds(cfg_.timeout_s);
    options.sender_timeout = absl::Seconds(cfg_.timeout_s);
    if (int p = absl::GetFlag(FLAGS_part_size); p > 0) options.part_size = p;
    if (int m = absl::GetFlag(FLAGS_max_parts_in_flight); m > 0) {
      options.max_parts_in_flight = m;
    }
    return options;
  }

  const Config& cfg_;
  std::shared_ptr<gloo::Context> context_;
  std::unique_ptr<hivemind::Endpoint> endpoint_;
  std::unique_ptr<hivemind::AllReducer> reducer_;
  std::vector<hivemind::GroupMember> members_;
  std::unique_ptr<hivemind::Codec> codec_;
  std::vector<float> residual_;
};

// ---------------------------------------------------------------------------------
// Report (rank 0).

struct Summary {
  double hivemind_median = NAN;
  double gloo_median = NAN;
  double hivemind_cpu = NAN;  // CPU seconds per rank per round (mean of medians)
  double gloo_cpu = NAN;
  bool failed = false;
};

std::string FormatTimes(const std::vector<double>& v) {
  std::string s;
  for (double x : v) absl::StrAppend(&s, s.empty() ? "" : " ", std::round(x * 1e4) / 1e4);
  return s;
}

bool AllEqual(const std::vector<std::vector<double>>& all, size_t field) {
  for (const auto& r : all) {
    if (r[field] != all[0][field]) return false;
  }
  return true;
}

// Gathers hivemind's per-rank figures; rank 0 prints them. Layout of a rank's row:
// repeats times, then bytes_sent, max_error, digest, failures, encode_s, reduce_s,
// cpu_s.
void ReportHivemind(const std::shared_ptr<gloo::Context>& context, const Config& cfg,
                    const HivemindResult& h, Summary* summary) {
  std::vector<double> row = h.seconds;
  row.resize(cfg.repeats, NAN);
  const size_t f = cfg.repeats;
  row.insert(row.end(), {double(h.bytes_sent), h.max_error, double(h.digest),
                         double(h.failures), h.encode_s, h.reduce_s, h.cpu_s});
  auto all = GatherAll(context, row);
  double max_bytes = 0, min_bytes = INFINITY, max_error = 0, failures = 0, cpu = 0;
  for (const auto& r : all) {
    cpu += r[f + 6] / all.size();
    max_bytes = std::max(max_bytes, r[f]);
    min_bytes = std::min(min_bytes, r[f]);
    max_error = MaxOrNan(max_error, r[f + 1]);
    failures += r[f + 3];
  }
  const bool identical = AllEqual(all, f + 2);
  const bool raw = cfg.codec_spec == "none" && !cfg.error_feedback;
  const bool accurate = !raw || max_error <= 1e-5;  // false for NaN
  summary->failed |= failures > 0 || !identical || !accurate;
  std::vector<double> slowest = SlowestPerRepeat(all, cfg.repeats);
  summary->hivemind_median = Median(slowest);
  summary->hivemind_cpu = cpu;
  if (cfg.rank != 0) return;
  const int n = cfg.peers;
  const double payload = max_bytes * n / (2.0 * (n - 1));  // M in 2*M*(n-1)/n
  std::printf(
      "hivemind: round median=%.4fs min=%.4fs max=%.4fs (slowest rank per "
      "repeat: %s)\n",
      summary->hivemind_median, *std::min_element(slowest.begin(), slowest.end()),
      *std::max_element(slowest.begin(), slowest.end()), FormatTimes(slowest).c_str());
  std::printf(
      "hivemind: bytes_sent_per_peer=%.0f (%.2f MB; min over ranks %.2f MB) "
      "payload_per_rank M=%.2f MB (%.2fx smaller than fp32)\n",
      max_bytes, max_bytes / 1e6, min_bytes / 1e6, payload / 1e6,
      cfg.numel * 4.0 / payload);
  std::printf(
      "hivemind: rank0 encode=%.4fs reduce=%.4fs (CPU time in the round, "
      "median)\n",
      all[0][f + 4], all[0][f + 5]);
  std::printf(
      "hivemind: cpu_per_rank=%.4fs (CPU time of a rank's process in a round, all "
      "threads, median, mean over ranks)\n",
      cpu);
  std::printf(
      "hivemind: max_error=%.3g (%s) results_identical_on_all_ranks=%s "
      "failed_rounds=%.0f\n",
      max_error,
      raw ? (accurate ? "raw, within 1e-5: ok" : "raw: OVER 1e-5")
          : "lossy codec, reported only",
      identical ? "yes" : "NO", failures);
  if (cfg.link_mbit > 0) {
    double bound = max_bytes * 8 / (cfg.link_mbit * 1e6);
    std::printf(
        "hivemind: link_bound=%.4fs (2*M*(n-1)/(n*B), B=%g Mbit/s) "
        "hivemind_fraction_of_bound=%.3f\n",
        bound, cfg.link_mbit, bound / summary->hivemind_median);
  }
}

void ReportGloo(const std::shared_ptr<gloo::Context>& context, const Config& cfg,
                const GlooResult& g, Summary* summary) {
  std::vector<double> row = g.seconds;
  const size_t f = cfg.repeats;
  row.insert(row.end(), {g.max_error, double(g.digest), Median(g.cpu)});
  auto all = GatherAll(context, row);
  double max_error = 0, cpu = 0;
  for (const auto& r : all) {
    max_error = MaxOrNan(max_error, r[f]);
    cpu += r[f + 2] / all.size();
  }
  const bool identical = AllEqual(all, f + 1);
  std::vector<double> slowest = SlowestPerRepeat(all, cfg.repeats);
  summary->gloo_median = Median(slowest);
  summary->gloo_cpu = cpu;
  summary->failed |= !(max_error <= 1e-5);
  if (cfg.rank != 0) return;
  std::string trials;
  for (const auto& [name, s] : g.trials) absl::StrAppend(&trials, " ", name, "=", s, "s");
  if (!trials.empty()) std::printf("gloo: trial rounds:%s\n", trials.c_str());
  std::printf(
      "gloo(%s): round median=%.4fs min=%.4fs max=%.4fs (slowest rank per "
      "repeat: %s)\n",
      g.algorithm.c_str(), summary->gloo_median,
      *std::min_element(slowest.begin(), slowest.end()),
      *std::max_element(slowest.begin(), slowest.end()), FormatTimes(slowest).c_str());
  std::printf("gloo: max_error=%.3g results_identical_on_all_ranks=%s\n", max_error,
              identical ? "yes" : "no");
  std::printf("gloo: cpu_per_rank=%.4fs (as for hivemind)\n", cpu);
  if (cfg.link_mbit > 0) {
    const int n = cfg.peers;
    double bound = 2.0 * cfg.numel * 4 * (n - 1) / n * 8 / (cfg.link_mbit * 1e6);
    std::printf(
        "gloo: link_bound=%.4fs (M=%.2f MB raw fp32) gloo_fraction_of_bound=%.3f\n",
        bound, cfg.numel * 4 / 1e6, bound / summary->gloo_median);
  }
}

// ---------------------------------------------------------------------------------

absl::StatusOr<Config> ReadFlags() {
  Config cfg;
  cfg.rank = absl::GetFlag(FLAGS_rank);
  cfg.peers = absl::GetFlag(FLAGS_peers);
  cfg.numel = absl::GetFlag(FLAGS_numel);
  cfg.codec_spec = absl::GetFlag(FLAGS_codec);
  if (absl::EndsWith(cfg.codec_spec, "+ef")) {
    cfg.error_feedback = true;
    cfg.codec_spec.resize(cfg.codec_spec.size() - 3);
  }
  cfg.repeats = absl::GetFlag(FLAGS_repeats);
  cfg.warmup = absl::GetFlag(FLAGS_warmup);
  cfg.listen_host = absl::GetFlag(FLAGS_listen_host);
  cfg.dir = absl::GetFlag(FLAGS_rendezvous_dir);
  std::string mode = absl::GetFlag(FLAGS_mode);
  cfg.run_hivemind = mode == "both" || mode == "hivemind";
  cfg.run_gloo = mode == "both" || mode == "gloo";
  cfg.gloo_algorithm = absl::GetFlag(FLAGS_gloo_algorithm);
  cfg.link_mbit = absl::GetFlag(FLAGS_link_mbit);
  cfg.timeout_s = absl::GetFlag(FLAGS_timeout_s);
  if (cfg.peers < 2 || cfg.rank < 0 || cfg.rank >= cfg.peers) {
    return absl::InvalidArgumentError("need --peers >= 2 and 0 <= --rank < --peers");
  }
  if (cfg.numel < 1 || cfg.numel > INT32_MAX) {
    return absl::InvalidArgumentError("--numel must be in [1, 2^31) (Gloo's count)");
  }
  if (cfg.repeats < 1 || cfg.warmup < 0) {
    return absl::InvalidArgumentError("need --repeats >= 1, --warmup >= 0");
  }
  if (cfg.dir.empty()) return absl::InvalidArgumentError("--rendezvous_dir is required");
  if (!cfg.run_hivemind && !cfg.run_gloo) {
    return absl::InvalidArgumentError("--mode must be both, hivemind or gloo");
  }
  if (cfg.gloo_algorithm != "auto" && cfg.gloo_algorithm != "ring" &&
      cfg.gloo_algorithm != "ring_chunked" && cfg.gloo_algorithm != "halving_doubling") {
    return absl::InvalidArgumentError("unknown --gloo_algorithm " + cfg.gloo_algorithm);
  }
  return cfg;
}

int RunBenchmark(const Config& cfg) {
  auto context = ConnectGloo(cfg, "control");
  HivemindBench hivemind_bench(cfg, context);
  if (cfg.run_hivemind) {
    absl::Status st = hivemind_bench.Setup();
    if (!st.ok()) {
      std::fprintf(stderr, "rank %d: hivemind setup: %s\n", cfg.rank,
                   st.ToString().c_str());
      return 1;
    }
  }
  if (cfg.rank == 0) {
    std::printf(
        "allreduce_vs_gloo: peers=%d numel=%lld (%.1f MB fp32) codec=%s%s "
        "repeats=%d warmup=%d listen_host=%s\n",
        cfg.peers, (long long)cfg.numel, cfg.numel * 4 / 1e6, cfg.codec_spec.c_str(),
        cfg.error_feedback ? "+ef" : "", cfg.repeats, cfg.warmup,
        cfg.listen_host.c_str());
    std::fflush(stdout);
  }
  std::vector<float> data(cfg.numel);
  std::map<std::string, GlooCandidate> gloo_candidates;  // see GlooCandidate
  Summary summary;
  if (cfg.run_hivemind) {
    HivemindResult h = hivemind_bench.Run(&data);
    ReportHivemind(context, cfg, h, &summary);
  }
  if (cfg.run_gloo) {
    GlooResult g = RunGloo(context, cfg, &data, &gloo_candidates);
    ReportGloo(context, cfg, g, &summary);
  }
  // Nobody shuts its endpoint (or a Gloo pair) down while others still need it.
  Barrier(context);
  if (cfg.rank == 0) {
    if (cfg.run_hivemind && cfg.run_gloo) {
      double ratio = summary.hivemind_median / summary.gloo_median;
      std::printf("speedup_vs_gloo=%.3f\n", 1.0 / ratio);
      std::printf("cpu_ratio_vs_gloo=%.4f\n", summary.hivemind_cpu / summary.gloo_cpu);
      if (summary.failed) std::printf("FAILED: see the lines above and stderr\n");
      std::printf("ratio_vs_gloo=%.4f\n", ratio);
    } else if (summary.failed) {
      std::printf("FAILED: see the lines above and stderr\n");
    }
  }
  return summary.failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto cfg = ReadFlags();
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", cfg.status().ToString().c_str());
    return 2;
  }
  if (absl::GetFlag(FLAGS_retain_freed_memory)) {
    if (absl::Status s = hivemind::RetainFreedMemory(); !s.ok()) {
      std::fprintf(stderr, "rank %d: RetainFreedMemory: %s\n", cfg->rank,
                   s.ToString().c_str());
    }
  }
  try {
    return RunBenchmark(*cfg);
  } catch (const std::exception& e) {  // Gloo reports timeouts and I/O errors so
    std::fprintf(stderr, "rank %d: %s\n", cfg->rank, e.what());
    return 1;
  }
}
