// What the swarm costs a peer as its model grows (bench/model_scale.sh runs 2 or 4 of
// these behind one bootstrap node; docs/benchmarks.md "Model scale"). One process is
// one peer: an MLP of width x width layers (--mparams million parameters) on random
// data, Adam wrapped by DecentralizedOptimizer, gradient averaging (or DiLoCo), for
// --epochs epochs of --target_batch_size samples.
//
//   model_scale --initial_peers=HOST:PORT --peers=N [--mparams=10] [--width=2048]
//               [--mode=grad|diloco] [--codec=none|blockwise4] [--epochs=3]
//               [--target_batch_size=64] [--batch=16] [--run_id=scale]
//
// Memory: VmHWM (peak resident) after one forward, backward and Adam step of the bare
// model (the RSS of model + optimizer alone) and at the end; their difference, in
// units of the model's fp32 bytes, is what the swarm added. Time: per epoch, the
// wall time and the time spent in forward and backward; the rest (Step: averaging,
// the inner step, state publication) is the swarm's overhead plus the Adam step,
// whose bare time is measured once and printed.
//
// The last line is
//   model_scale: params=P model_mb=M base_hwm_mb=B end_hwm_mb=E added_x=X
//       epochs=K epoch_s=a,b,c compute_s=a,b,c step_s=a,b,c adam_s=T sent_mb=S
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adam.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "hivemind/codec/factory.h"
#include "hivemind/dht/opendht_node.h"
#include "hivemind/optim/optimizer.h"

ABSL_FLAG(std::string, initial_peers, "", "bootstrap DHT peers, HOST:PORT[,...]");
ABSL_FLAG(std::string, run_id, "scale", "run id (DHT keys)");
ABSL_FLAG(int, peers, 2, "peers in the swarm (target group size)");
ABSL_FLAG(double, mparams, 10.0, "model size in millions of parameters");
ABSL_FLAG(int, width, 2048, "width of the MLP's square layers");
ABSL_FLAG(std::string, mode, "grad", "grad (gradient averaging) or diloco");
ABSL_FLAG(std::string, codec, "none", "gradient codec: none or a codec spec");
ABSL_FLAG(int, epochs, 3, "epochs to train");
ABSL_FLAG(int, target_batch_size, 64, "samples per epoch, the whole swarm");
ABSL_FLAG(int, batch, 16, "samples per local step");
ABSL_FLAG(double, max_seconds, 1800, "give up after this long");

namespace {

// Peak resident memory of this process, in MiB (VmHWM).
double PeakRssMb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      return std::stod(line.substr(6)) / 1024.0;  // kB
    }
  }
  return 0.0;
}

torch::nn::Sequential MakeModel(double mparams, int width) {
  const double per_layer = static_cast<double>(width) * (width + 1);
  const int layers = std::max(1, static_cast<int>(mparams * 1e6 / per_layer + 0.5));
  torch::nn::Sequential model;
  for (int i = 0; i < layers; ++i) model->push_back(torch::nn::Linear(width, width));
  return model;
}

std::string Join(const std::vector<double>& v) {
  return absl::StrJoin(v, ",", [](std::string* out, double x) {
    absl::StrAppend(out, absl::StrFormat("%.3f", x));
  });
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  torch::manual_seed(1);
  const int width = absl::GetFlag(FLAGS_width);
  const int batch = absl::GetFlag(FLAGS_batch);
  torch::nn::Sequential model = MakeModel(absl::GetFlag(FLAGS_mparams), width);
  int64_t params = 0;
  for (const torch::Tensor& p : model->parameters()) params += p.numel();
  const double model_mb = static_cast<double>(params) * 4.0 / (1 << 20);
  const torch::Tensor x = torch::randn({batch, width});
  const torch::Tensor y = torch::randn({batch, width});
  auto adam = std::make_unique<torch::optim::Adam>(model->parameters(),
                                                   torch::optim::AdamOptions(1e-4));
  // The bare model's peak: one step, so Adam's statistics exist.
  adam->zero_grad();
  torch::mse_loss(model->forward(x), y).backward();
  const absl::Time adam_start = absl::Now();
  adam->step();
  const double adam_s = absl::ToDoubleSeconds(absl::Now() - adam_start);
  const double base_hwm = PeakRssMb();

  hivemind::DhtOptions dht_options;
  dht_options.run_id = absl::GetFlag(FLAGS_run_id);
  for (absl::string_view peer :
       absl::StrSplit(absl::GetFlag(FLAGS_initial_peers), ',', absl::SkipEmpty())) {
    dht_options.initial_peers.emplace_back(peer);
  }
  auto dht = hivemind::OpenDhtNode::Create(dht_options);
  if (!dht.ok()) {
    std::fprintf(stderr, "model_scale: DHT: %s\n", dht.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<hivemind::Codec> codec;
  if (absl::GetFlag(FLAGS_codec) != "none") {
    auto made = hivemind::CreateCodecFromSpec(absl::GetFlag(FLAGS_codec));
    if (!made.ok()) {
      std::fprintf(stderr, "model_scale: %s\n", made.status().ToString().c_str());
      return 1;
    }
    codec = *std::move(made);
  }
  hivemind::OptimizerOptions options;
  options.run_id = absl::GetFlag(FLAGS_run_id);
  options.target_batch_size = absl::GetFlag(FLAGS_target_batch_size);
  options.batch_size_per_step = batch;
  options.target_group_size = absl::GetFlag(FLAGS_peers);
  options.min_group_size = 2;
  options.grad_codec = codec.get();
  options.matchmaking_time = absl::Seconds(5);
  options.averaging_timeout = absl::Seconds(300);
  options.load_state_timeout = absl::Seconds(300);
  if (absl::GetFlag(FLAGS_mode) == "diloco") {
    options.use_local_updates = true;
    options.diloco_outer_lr = 0.7;
  } else if (absl::GetFlag(FLAGS_mode) != "grad") {
    std::fprintf(stderr, "model_scale: --mode is grad or diloco\n");
    return 2;
  }
  auto opt = hivemind::DecentralizedOptimizer::Create(dht->get(), model->parameters(),
                                                      std::move(adam), options);
  if (!opt.ok()) {
    std::fprintf(stderr, "model_scale: %s\n", opt.status().ToString().c_str());
    return 1;
  }

  std::vector<double> epoch_s, compute_s, step_s;
  double compute = 0.0, stepping = 0.0;
  const absl::Time start = absl::Now();
  absl::Time epoch_start = start;
  const int epochs = absl::GetFlag(FLAGS_epochs);
  while ((*opt)->local_epoch() < epochs &&
         absl::Now() - start < absl::Seconds(absl::GetFlag(FLAGS_max_seconds))) {
    const absl::Time t0 = absl::Now();
    (*opt)->ZeroGrad();
    torch::Tensor loss = torch::mse_loss(model->forward(x), y);
    loss.backward();
    const absl::Time t1 = absl::Now();
    auto report = (*opt)->Step(batch, loss.item<double>());
    const absl::Time t2 = absl::Now();
    compute += absl::ToDoubleSeconds(t1 - t0);
    stepping += absl::ToDoubleSeconds(t2 - t1);
    if (!report.ok()) {
      std::fprintf(stderr, "model_scale: step: %s\n", report.status().ToString().c_str());
      continue;
    }
    if (report->epoch_advanced || report->loaded_state) {
      epoch_s.push_back(absl::ToDoubleSeconds(t2 - epoch_start));
      compute_s.push_back(compute);
      step_s.push_back(stepping);
      std::printf(
          "model_scale: epoch %lld: %.3f s (compute %.3f, step %.3f)%s, hwm %.0f MB\n",
          static_cast<long long>((*opt)->local_epoch()), epoch_s.back(), compute,
          stepping, report->loaded_state ? " loaded the state" : "", PeakRssMb());
      std::fflush(stdout);
      epoch_start = t2;
      compute = stepping = 0.0;
    }
  }
  const hivemind::OptimizerStats stats = (*opt)->stats();
  (*opt)->Finish(absl::Seconds(2)).IgnoreError();
  const double end_hwm = PeakRssMb();
  std::printf(
      "model_scale: params=%lld model_mb=%.1f base_hwm_mb=%.0f end_hwm_mb=%.0f "
      "added_x=%.2f epochs=%zu epoch_s=%s compute_s=%s step_s=%s adam_s=%.3f "
      "sent_mb=%.1f\n",
      static_cast<long long>(params), model_mb, base_hwm, end_hwm,
      (end_hwm - base_hwm) / model_mb, epoch_s.size(), Join(epoch_s).c_str(),
      Join(compute_s).c_str(), Join(step_s).c_str(), adam_s,
      static_cast<double>(stats.bytes_sent) / (1 << 20));
  return 0;
}
