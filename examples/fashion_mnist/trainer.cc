// A Fashion-MNIST trainer peer: trains a small MLP with a DecentralizedOptimizer,
// with other peers of the same run, printing live progress; at the end it prints
// its test accuracy.
//
//   fashion_mnist_trainer --initial_peers=127.0.0.1:4000 --peer_index=1 --num_peers=4
//
// Every peer reads Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)
// and trains on its own shard. Stop it with SIGINT/SIGTERM, --epochs or --leave_after.
#include <signal.h>
#include <torch/torch.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "fashion_mnist/dataset.h"
#include "hivemind/codec/factory.h"
#include "hivemind/dht/opendht_node.h"
#include "hivemind/optim/optimizer.h"
#include "hivemind/util/logging.h"

ABSL_FLAG(std::string, initial_peers, "", "DHT peers to join, HOST:PORT,...");
ABSL_FLAG(std::string, listen_host, "127.0.0.1",
          "Address this peer listens on (DHT and averaging; ports are free ones).");
ABSL_FLAG(std::string, run_id, "fashion_mnist",
          "Run id: peers of one run train together.");
ABSL_FLAG(std::string, data_dir, "/usr/share/datasets/fashion-mnist",
          "Directory of the gzip idx files.");
ABSL_FLAG(std::string, mode, "node", "node, client or aux (auxiliary: averages only).");
ABSL_FLAG(std::string, codec, "none",
          "Gradient codec spec (none, fp16, blockwise8, blockwise4, ...).");
ABSL_FLAG(std::string, state_codec, "none", "Parameter-averaging codec spec.");
ABSL_FLAG(bool, grad_error_feedback, true, "Error feedback for the gradient codec.");
ABSL_FLAG(int64_t, target_batch_size, 1024, "Samples the swarm gathers per epoch.");
ABSL_FLAG(int64_t, batch_size, 64, "Samples per local step.");
ABSL_FLAG(double, lr, 3e-3, "Adam learning rate.");
ABSL_FLAG(bool, local_updates, false, "Step locally, average parameters per epoch.");
ABSL_FLAG(double, diloco_outer_lr, 0.0, "DiLoCo outer learning rate (0: off).");
ABSL_FLAG(int, average_state_every, 5,
          "Average parameters every N epochs (gradient averaging keeps the peers' "
          "parameters equal; this corrects drift).");
ABSL_FLAG(int, target_group_size, 16, "Averaging group size.");
ABSL_FLAG(int, min_group_size, 2,
          "Smallest averaging group (CenteredClip needs 3 to outvote one Byzantine).");
ABSL_FLAG(int64_t, epochs, 20, "Stop at this collaborative epoch.");
ABSL_FLAG(double, leave_after, 0, "Leave the swarm after this many seconds (0: never).");
ABSL_FLAG(double, max_seconds, 600, "Stop after this many seconds in any case.");
ABSL_FLAG(int, peer_index, 0, "This peer's shard of the training set.");
ABSL_FLAG(int, num_peers, 1, "Number of shards.");
ABSL_FLAG(uint64_t, seed, 0, "Initialisation and shuffling seed (0: from the index).");
ABSL_FLAG(std::string, progress_log, "", "JSON lines of per-epoch progress.");
ABSL_FLAG(std::string, step_log, "",
          "JSON lines, one per optimizer Step that ended an epoch, loaded the state, "
          "failed or blocked over 1 s: how long it blocked (tests/chaos checks it).");
ABSL_FLAG(std::string, stop_epoch_file, "",
          "If this file exists, it holds the epoch to stop at instead of --epochs "
          "(read at every epoch and progress line).");
ABSL_FLAG(double, finish_window_s, 0,
          "At the stop epoch, wait this long so that all peers end with the same "
          "parameters: a peer whose last round failed loads the others' state, the "
          "others serve theirs meanwhile (DecentralizedOptimizer::Finish; 0: no wait).");
ABSL_FLAG(std::string, checkpoint_out, "",
          "Save a checkpoint (parameters, optimizer state, epoch) here on exit.");
ABSL_FLAG(double, averaging_timeout, 30.0,
          "Seconds of one averaging round (matchmaking and all-reduce).");
ABSL_FLAG(std::string, name, "", "Name shown in progress lines (default: peer index).");
ABSL_FLAG(std::string, log_level, "info",
          "The library's log threshold: debug, info (every averaging round, state "
          "loads), warning, error or off.");
ABSL_FLAG(double, report_every, 2.0, "Seconds between progress lines.");
ABSL_FLAG(bool, standalone, false,
          "Train alone without the swarm: one Adam step per target_batch_size samples "
          "(the single-process reference of bench/convergence.sh).");
ABSL_FLAG(bool, delay_updates, false, "Overlap gradient averaging with computation.");
ABSL_FLAG(double, matchmaking_time, 3.0, "Seconds of one matchmaking attempt.");
ABSL_FLAG(std::string, aggregation, "mean",
          "How reducers combine gradients and parameters: mean or centered_clip "
          "(every peer of a run must use the same).");
ABSL_FLAG(double, clip_tau, 0.0,
          "CenteredClip radius, RMS per element (0: automatic, the median distance).");
ABSL_FLAG(double, clip_reject_ratio, 10.0,
          "CenteredClip leaves out contributions farther than this x the median "
          "distance from the median (0: none, only clipping).");
ABSL_FLAG(std::string, poison, "none",
          "Make this peer Byzantine: none; scale (gradients x --poison_scale); noise "
          "(gradients replaced by Gaussian noise of std --poison_std).");
ABSL_FLAG(double, poison_scale, -1e3,
          "Factor of --poison=scale (negative by default: Adam normalizes away a "
          "positive scale, a reversed gradient is what hurts).");
ABSL_FLAG(double, poison_std, 1.0,
          "Noise std of --poison=noise (far larger than honest gradients).");
ABSL_FLAG(std::string, swarm_secret_file, "",
          "A private swarm: a file holding the swarm's secret (>= 16 bytes, trailing "
          "newline ignored); only peers with the same secret exchange data.");
ABSL_FLAG(bool, encrypt, true,
          "CURVE on every connection (--noencrypt only on a trusted network; every "
          "peer must agree).");

namespace {

namespace fmnist = hivemind::fashion_mnist;

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

struct Mlp : torch::nn::Module {
  Mlp() {
    fc1 = register_module("fc1", torch::nn::Linear(784, 128));
    fc2 = register_module("fc2", torch::nn::Linear(128, 10));
  }
  torch::Tensor forward(torch::Tensor x) {
    return torch::log_softmax(fc2->forward(torch::relu(fc1->forward(x))), 1);
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};

torch::Tensor AsImages(const std::vector<float>& pixels, int64_t n) {
  return torch::from_blob(const_cast<float*>(pixels.data()), {n, 784}, torch::kFloat);
}

torch::Tensor AsLabels(const std::vector<uint8_t>& labels) {
  return torch::from_blob(const_cast<uint8_t*>(labels.data()),
                          {static_cast<int64_t>(labels.size())}, torch::kUInt8)
      .to(torch::kLong);
}

double TestAccuracy(Mlp& model, const fmnist::Dataset& test) {
  torch::NoGradGuard no_grad;
  const torch::Tensor x = AsImages(test.images, static_cast<int64_t>(test.size()));
  const torch::Tensor y = AsLabels(test.labels);
  const torch::Tensor predicted = model.forward(x).argmax(1);
  return predicted.eq(y).to(torch::kDouble).mean().item<double>();
}

absl::StatusOr<std::unique_ptr<hivemind::Codec>> CodecFor(const std::string& spec) {
  if (spec == "none" || spec.empty()) return std::unique_ptr<hivemind::Codec>();
  return hivemind::CreateCodecFromSpec(spec);
}

// What a Byzantine peer does to its gradients before the optimizer step.
void PoisonGradients(Mlp& model, const std::string& poison) {
  if (poison == "none") return;
  torch::NoGradGuard no_grad;
  for (torch::Tensor& p : model.parameters()) {
    torch::Tensor g = p.mutable_grad();
    if (!g.defined()) continue;
    if (poison == "scale") {
      g.mul_(absl::GetFlag(FLAGS_poison_scale));
    } else {
      g.copy_(torch::randn_like(g) * absl::GetFlag(FLAGS_poison_std));
    }
  }
}

void PrintProgress(const std::string& name, const hivemind::DecentralizedOptimizer& opt,
                   double loss) {
  const hivemind::GlobalProgress g = opt.global_progress();
  const absl::Duration eta = g.eta_next_epoch - absl::Now();
  std::printf(
      "[%s] epoch %lld | swarm %6.0f samples/s | peers %d | loss %.4f | "
      "swarm samples %llu/%llu | ETA %s\n",
      name.c_str(), static_cast<long long>(opt.local_epoch()), g.samples_per_second,
      g.num_peers, loss, static_cast<unsigned long long>(g.samples_accumulated),
      static_cast<unsigned long long>(g.target_batch_size),
      eta < absl::Hours(1) ? absl::StrFormat("%.1fs", absl::ToDoubleSeconds(std::max(
                                                          eta, absl::ZeroDuration())))
                                 .c_str()
                           : "?");
  std::fflush(stdout);
}

// The epoch to stop at: --stop_epoch_file's number when it holds one, else `epochs`.
int64_t StopEpoch(int64_t epochs) {
  const std::string path = absl::GetFlag(FLAGS_stop_epoch_file);
  if (path.empty()) return epochs;
  std::ifstream in(path);
  long long stop = 0;
  return in >> stop ? static_cast<int64_t>(stop) : epochs;
}

// Appends a line to --step_log for a Step worth checking against its deadline.
void LogStep(const std::string& name, double seconds,
             const absl::StatusOr<hivemind::OptimizerStepReport>& report) {
  const std::string path = absl::GetFlag(FLAGS_step_log);
  const bool notable =
      !report.ok() || report->epoch_advanced || report->loaded_state || seconds > 1.0;
  if (path.empty() || !notable) return;
  nlohmann::ordered_json line;
  line["time"] = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  line["peer"] = name;
  line["seconds"] = seconds;
  line["epoch"] = report.ok() ? report->epoch : -1;
  line["advanced"] = report.ok() && report->epoch_advanced;
  line["loaded"] = report.ok() && report->loaded_state;
  line["ok"] = report.ok();
  std::ofstream out(path, std::ios::app);
  out << line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)
      << '\n';
}

// The single-process reference: the same model, optimizer and global batch.
int RunStandalone(const std::string& name, const fmnist::Dataset& train,
                  const fmnist::Dataset& test) {
  Mlp model;
  torch::optim::Adam adam(model.parameters(),
                          torch::optim::AdamOptions(absl::GetFlag(FLAGS_lr)));
  const int64_t batch = absl::GetFlag(FLAGS_target_batch_size);
  const int64_t n = static_cast<int64_t>(train.size());
  const absl::Time start = absl::Now();
  int64_t cursor = 0;
  for (int64_t epoch = 0; epoch < absl::GetFlag(FLAGS_epochs); ++epoch) {
    if (cursor + batch > n) cursor = 0;
    adam.zero_grad();
    torch::Tensor loss =
        torch::nll_loss(model.forward(AsImages(train.images, n).narrow(0, cursor, batch)),
                        AsLabels(train.labels).narrow(0, cursor, batch));
    loss.backward();
    adam.step();
    cursor += batch;
  }
  std::printf(
      "[%s] final: epoch %lld, test accuracy %.4f, bytes sent 0, "
      "utilization 1.000, %.1f s\n",
      name.c_str(), static_cast<long long>(absl::GetFlag(FLAGS_epochs)),
      TestAccuracy(model, test), absl::ToDoubleSeconds(absl::Now() - start));
  return 0;
}

int Run() {
  const int index = absl::GetFlag(FLAGS_peer_index);
  const std::string name = absl::GetFlag(FLAGS_name).empty()
                               ? absl::StrFormat("peer%d", index)
                               : absl::GetFlag(FLAGS_name);
  const uint64_t seed = absl::GetFlag(FLAGS_seed) ? absl::GetFlag(FLAGS_seed)
                                                  : static_cast<uint64_t>(index + 1);
  torch::manual_seed(seed);

  auto train = fmnist::Load(fmnist::Split::kTrain, absl::GetFlag(FLAGS_data_dir));
  auto test = fmnist::Load(fmnist::Split::kTest, absl::GetFlag(FLAGS_data_dir));
  absl::StatusOr<fmnist::Dataset> sharded =
      train.ok() ? fmnist::Shard(*train, index, absl::GetFlag(FLAGS_num_peers), seed)
                 : train.status();
  if (!sharded.ok() || !test.ok()) {
    std::fprintf(stderr, "%s: cannot load Fashion-MNIST: %s\n", name.c_str(),
                 (sharded.ok() ? test.status() : sharded.status()).ToString().c_str());
    return 1;
  }
  if (absl::GetFlag(FLAGS_standalone)) return RunStandalone(name, *train, *test);
  const fmnist::Dataset& shard = *sharded;
  const int64_t shard_size = static_cast<int64_t>(shard.size());

  hivemind::DhtOptions dht_options;
  dht_options.run_id = absl::GetFlag(FLAGS_run_id);
  dht_options.listen_address = absl::GetFlag(FLAGS_listen_host) + ":0";
  for (absl::string_view peer :
       absl::StrSplit(absl::GetFlag(FLAGS_initial_peers), ',', absl::SkipEmpty())) {
    dht_options.initial_peers.emplace_back(peer);
  }
  auto dht = hivemind::OpenDhtNode::Create(dht_options);
  if (!dht.ok()) {
    std::fprintf(stderr, "%s: DHT: %s\n", name.c_str(), dht.status().ToString().c_str());
    return 1;
  }
  auto grad_codec = CodecFor(absl::GetFlag(FLAGS_codec));
  auto state_codec = CodecFor(absl::GetFlag(FLAGS_state_codec));
  if (!grad_codec.ok() || !state_codec.ok()) {
    std::fprintf(stderr, "%s: bad codec: %s\n", name.c_str(),
                 (grad_codec.ok() ? state_codec.status() : grad_codec.status())
                     .ToString()
                     .c_str());
    return 1;
  }

  const std::string aggregation = absl::GetFlag(FLAGS_aggregation);
  const absl::StatusOr<hivemind::Aggregation> method =
      hivemind::ParseAggregation(aggregation);
  const absl::StatusOr<hivemind::MemberMode> mode =
      hivemind::ParseMemberMode(absl::GetFlag(FLAGS_mode));
  const std::string poison = absl::GetFlag(FLAGS_poison);
  for (const absl::Status& status : {method.status(), mode.status()}) {
    if (!status.ok()) {
      std::fprintf(stderr, "%s: --%s\n", name.c_str(),
                   std::string(status.message()).c_str());
      return 1;
    }
  }
  if (poison != "none" && poison != "scale" && poison != "noise") {
    std::fprintf(stderr, "%s: --poison is none, scale or noise\n", name.c_str());
    return 1;
  }

  auto model = std::make_shared<Mlp>();
  hivemind::OptimizerOptions options;
  options.run_id = absl::GetFlag(FLAGS_run_id);
  options.target_batch_size = absl::GetFlag(FLAGS_target_batch_size);
  options.batch_size_per_step = absl::GetFlag(FLAGS_batch_size);
  options.mode = *mode;
  options.endpoint.client_mode = options.mode == hivemind::MemberMode::kClient;
  options.endpoint.listen_address = "tcp://" + absl::GetFlag(FLAGS_listen_host) + ":0";
  options.endpoint.encrypt = absl::GetFlag(FLAGS_encrypt);
  if (const std::string secret_file = absl::GetFlag(FLAGS_swarm_secret_file);
      !secret_file.empty()) {
    std::ifstream in(secret_file);
    std::getline(in, options.endpoint.swarm_secret);
    if (!in && options.endpoint.swarm_secret.empty()) {
      std::fprintf(stderr, "%s: cannot read --swarm_secret_file %s\n", name.c_str(),
                   secret_file.c_str());
      return 1;
    }
  }
  options.grad_codec = grad_codec->get();
  options.grad_error_feedback = absl::GetFlag(FLAGS_grad_error_feedback);
  options.state_codec = state_codec->get();
  options.use_local_updates = absl::GetFlag(FLAGS_local_updates);
  options.diloco_outer_lr = absl::GetFlag(FLAGS_diloco_outer_lr);
  options.average_state_every = absl::GetFlag(FLAGS_average_state_every);
  options.target_group_size = absl::GetFlag(FLAGS_target_group_size);
  options.min_group_size = absl::GetFlag(FLAGS_min_group_size);
  if (const std::string path = absl::GetFlag(FLAGS_progress_log); !path.empty()) {
    options.on_epoch = hivemind::AppendEpochJsonLines(path);
  }
  options.averaging_timeout = absl::Seconds(absl::GetFlag(FLAGS_averaging_timeout));
  options.delay_updates = absl::GetFlag(FLAGS_delay_updates);
  options.matchmaking_time = absl::Seconds(absl::GetFlag(FLAGS_matchmaking_time));
  options.aggregation.method = *method;
  if (*method == hivemind::Aggregation::kCenteredClip) {
    options.aggregation.clip_tau = static_cast<float>(absl::GetFlag(FLAGS_clip_tau));
    options.aggregation.clip_reject_ratio =
        static_cast<float>(absl::GetFlag(FLAGS_clip_reject_ratio));
  }
  auto opt = hivemind::DecentralizedOptimizer::Create(
      dht->get(), model->parameters(),
      std::make_unique<torch::optim::Adam>(
          model->parameters(), torch::optim::AdamOptions(absl::GetFlag(FLAGS_lr))),
      options);
  if (!opt.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), opt.status().ToString().c_str());
    return 1;
  }
  std::printf("[%s] joined run '%s' as %s (%lld training samples, aggregation %s%s)\n",
              name.c_str(), options.run_id.c_str(), (*opt)->id().substr(0, 8).c_str(),
              static_cast<long long>(shard_size), aggregation.c_str(),
              poison == "none" ? "" : (", Byzantine: " + poison).c_str());

  const int64_t batch = absl::GetFlag(FLAGS_batch_size);
  const absl::Time start = absl::Now();
  const double leave_after = absl::GetFlag(FLAGS_leave_after);
  absl::Time next_report = start;
  double loss_ema = 0.0;
  int64_t cursor = 0;
  int64_t stop_epoch = StopEpoch(absl::GetFlag(FLAGS_epochs));
  while (!g_stop && (*opt)->local_epoch() < stop_epoch) {
    const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
    if (elapsed > absl::GetFlag(FLAGS_max_seconds)) break;
    if (leave_after > 0 && elapsed > leave_after) {
      std::printf("[%s] leaving the swarm after %.0f s\n", name.c_str(), elapsed);
      break;
    }
    double loss_value = std::nan("");
    if (options.mode != hivemind::MemberMode::kAuxiliary) {
      if (cursor + batch > shard_size) cursor = 0;
      const torch::Tensor x = AsImages(shard.images, shard_size).narrow(0, cursor, batch);
      const torch::Tensor y = AsLabels(shard.labels).narrow(0, cursor, batch);
      cursor += batch;
      (*opt)->ZeroGrad();
      torch::Tensor loss = torch::nll_loss(model->forward(x), y);
      loss.backward();
      PoisonGradients(*model, poison);
      loss_value = loss.item<double>();
      loss_ema = loss_ema == 0.0 ? loss_value : 0.95 * loss_ema + 0.05 * loss_value;
    }
    const absl::Time step_start = absl::Now();
    auto report = (*opt)->Step(batch, loss_value);
    LogStep(name, absl::ToDoubleSeconds(absl::Now() - step_start), report);
    if (!report.ok()) {
      std::fprintf(stderr, "[%s] step: %s\n", name.c_str(),
                   report.status().ToString().c_str());
      continue;
    }
    if (report->loaded_state) {
      std::printf("[%s] caught up: loaded the swarm's state at epoch %lld\n",
                  name.c_str(), static_cast<long long>(report->epoch));
    }
    if (report->epoch_advanced) {
      std::printf("[%s] epoch %lld done: averaged with %d peer(s)%s\n", name.c_str(),
                  static_cast<long long>(report->epoch), report->group_size,
                  report->averaging_status.ok() ? "" : " (local gradients)");
    }
    if (report->epoch_advanced || report->loaded_state || absl::Now() >= next_report) {
      stop_epoch = StopEpoch(absl::GetFlag(FLAGS_epochs));
    }
    if (absl::Now() >= next_report) {
      PrintProgress(name, **opt, loss_ema);
      next_report = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_report_every));
    }
  }
  const double finish_window = absl::GetFlag(FLAGS_finish_window_s);
  if (finish_window > 0 && !g_stop && (*opt)->local_epoch() >= stop_epoch) {
    absl::Status finished = (*opt)->Finish(absl::Seconds(finish_window));
    if (!finished.ok()) {
      std::fprintf(stderr, "[%s] run end: %s\n", name.c_str(),
                   finished.ToString().c_str());
    }
  }
  if (options.mode != hivemind::MemberMode::kAuxiliary) {
    const hivemind::OptimizerStats stats = (*opt)->stats();
    const double wall = absl::ToDoubleSeconds(absl::Now() - start);
    std::printf(
        "[%s] final: epoch %lld, test accuracy %.4f, bytes sent %llu, "
        "utilization %.3f, %.1f s\n",
        name.c_str(), static_cast<long long>((*opt)->local_epoch()),
        TestAccuracy(*model, *test), static_cast<unsigned long long>(stats.bytes_sent),
        wall > 0 ? 1.0 - absl::ToDoubleSeconds(stats.wait_time) / wall : 0.0, wall);
  }
  if (const std::string path = absl::GetFlag(FLAGS_checkpoint_out); !path.empty()) {
    absl::Status saved = (*opt)->SaveCheckpoint(path);
    if (!saved.ok()) {
      std::fprintf(stderr, "[%s] checkpoint: %s\n", name.c_str(),
                   saved.ToString().c_str());
    }
  }
  (*opt)->Shutdown();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<hivemind::LogLevel> log_level =
      hivemind::ParseLogLevel(absl::GetFlag(FLAGS_log_level));
  if (!log_level.ok()) {
    std::fprintf(stderr, "--log_level: %s\n",
                 std::string(log_level.status().message()).c_str());
    return 2;
  }
  hivemind::SetLogLevel(*log_level);
  torch::set_num_threads(1);
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  return Run();
}
