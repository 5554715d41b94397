// DecentralizedOptimizer: peers training an MLP on synthetic data over a real
// OpenDHT and real endpoints on 127.0.0.1, one thread per peer.
#include "hivemind/optim/optimizer.h"

#include <torch/torch.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "hivemind/dht/opendht_node.h"
#include "hivemind/optim/progress_tracker.h"
#include "tests/optim/cuda_skip.h"

namespace hivemind {
namespace {

torch::nn::Sequential MakeModel(uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(torch::nn::Linear(8, 16), torch::nn::ReLU(),
                               torch::nn::Linear(16, 2));
}

// The model's parameters, copied to the host (from any device).
std::vector<float> Flat(torch::nn::Sequential& model) {
  std::vector<float> out;
  for (const torch::Tensor& p : model->parameters()) {
    const torch::Tensor host = p.detach().cpu().contiguous();
    const float* data = host.data_ptr<float>();
    out.insert(out.end(), data, data + host.numel());
  }
  return out;
}

struct Peer {
  std::unique_ptr<OpenDhtNode> dht;
  torch::nn::Sequential model{nullptr};
  std::unique_ptr<DecentralizedOptimizer> opt;
  std::atomic<bool> stop{false};
  std::thread thread;
};

class OptimizerSwarm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { torch::set_num_threads(1); }

  void SetUp() override {
    DhtOptions options;
    options.run_id = "optim";
    bootstrap_ = std::move(OpenDhtNode::Create(options)).value();
  }
  void TearDown() override {
    for (auto& peer : peers_) {
      peer->stop = true;
      if (peer->thread.joinable()) peer->thread.join();
    }
  }

  static OptimizerOptions Options() {
    OptimizerOptions o;
    o.run_id = "mlp";
    o.target_batch_size = 96;
    o.batch_size_per_step = 16;
    o.matchmaking_time = absl::Seconds(3);
    o.averaging_timeout = absl::Seconds(20);
    o.target_group_size = 3;  // groups assemble as soon as three peers join
    return o;
  }

  // A peer whose model lives on `device`.
  Peer* AddPeer(uint64_t seed, OptimizerOptions options = Options(),
                torch::Device device = torch::kCPU) {
    auto peer = std::make_unique<Peer>();
    DhtOptions d;
    d.run_id = "optim";
    d.initial_peers = {bootstrap_->address()};
    peer->dht = std::move(OpenDhtNode::Create(d)).value();
    peer->model = MakeModel(seed);
    peer->model->to(device);
    auto opt = DecentralizedOptimizer::Create(
        peer->dht.get(), peer->model->parameters(),
        std::make_unique<torch::optim::SGD>(peer->model->parameters(),
                                            torch::optim::SGDOptions(0.05).momentum(0.9)),
        options);
    EXPECT_TRUE(opt.ok()) << opt.status();
    peer->opt = std::move(opt).value();
    peers_.push_back(std::move(peer));
    return peers_.back().get();
  }

  // One step of `peer` on a batch of 16 synthetic samples (on `device`), drawn from
  // the calling thread's torch generator.
  static absl::StatusOr<OptimizerStepReport> StepOnSyntheticBatch(
      Peer* peer, torch::Device device = torch::kCPU) {
    const torch::Tensor w = torch::ones({8, 2}, device);
    torch::Tensor x = torch::randn({16, 8}, device);
    peer->opt->ZeroGrad();
    torch::Tensor loss = torch::mse_loss(peer->model->forward(x), torch::matmul(x, w));
    loss.backward();
    return peer->opt->Step(16, loss.item<double>());
  }

  // Trains `peer` on its own synthetic data (on `device`) in a thread until `epochs`
  // or stop.
  static void Train(Peer* peer, int64_t epochs, uint64_t seed,
                    torch::Device device = torch::kCPU) {
    peer->thread = std::thread([peer, epochs, seed, device] {
      torch::manual_seed(seed);
      while (!peer->stop && peer->opt->local_epoch() < epochs) {
        absl::StatusOr<OptimizerStepReport> report = StepOnSyntheticBatch(peer, device);
        if (!report.ok()) {
          ADD_FAILURE() << report.status();
          return;
        }
        absl::SleepFor(absl::Milliseconds(20));
      }
    });
  }

  // Trains `peers` together (seeds first_seed, first_seed + 1, ...) until `epochs`,
  // and waits for them.
  static void TrainTogether(const std::vector<Peer*>& peers, int64_t epochs,
                            uint64_t first_seed) {
    for (size_t i = 0; i < peers.size(); ++i) Train(peers[i], epochs, first_seed + i);
    for (Peer* p : peers) p->thread.join();
  }

  std::unique_ptr<OpenDhtNode> bootstrap_;
  std::vector<std::unique_ptr<Peer>> peers_;
};

TEST_F(OptimizerSwarm, ThreePeersAdvanceTogetherWithIdenticalParameters) {
  Peer* a = AddPeer(1);
  Peer* b = AddPeer(2);
  Peer* c = AddPeer(3);
  EXPECT_NE(Flat(a->model), Flat(b->model));  // different initialisations
  for (Peer* p : {a, b, c}) Train(p, 3, reinterpret_cast<uintptr_t>(p));
  for (Peer* p : {a, b, c}) p->thread.join();
  for (Peer* p : {a, b, c}) EXPECT_EQ(p->opt->local_epoch(), 3);
  // The last epoch averaged parameters in one group of three: bit-identical.
  EXPECT_EQ(Flat(a->model), Flat(b->model));
  EXPECT_EQ(Flat(a->model), Flat(c->model));
  EXPECT_GE(a->opt->global_progress().epoch, 3u);
}

std::vector<float> Flat(const std::vector<torch::Tensor>& tensors) {
  std::vector<float> out;
  for (const torch::Tensor& t : tensors) {
    out.insert(out.end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  }
  return out;
}

TEST_F(OptimizerSwarm, CudaParametersAverageThroughHostMemory) {
  HIVEMIND_SKIP_WITHOUT_CUDA();
  OptimizerOptions options = Options();
  options.target_group_size = 2;
  std::vector<Peer*> peers = {AddPeer(1, options, torch::kCUDA),
                              AddPeer(2, options, torch::kCUDA)};
  for (Peer* p : peers) Train(p, 2, reinterpret_cast<uintptr_t>(p), torch::kCUDA);
  for (Peer* p : peers) p->thread.join();
  EXPECT_EQ(Flat(peers[0]->model), Flat(peers[1]->model));
  EXPECT_TRUE(peers[0]->model->parameters()[0].is_cuda());
}

// A GPU peer (gradients summed on the device, host copies through pinned memory)
// and a CPU peer in one swarm end with the same model.
TEST_F(OptimizerSwarm, ACudaPeerAndACpuPeerTrainTogether) {
  HIVEMIND_SKIP_WITHOUT_CUDA();
  OptimizerOptions options = Options();
  options.target_group_size = 2;
  Peer* gpu = AddPeer(1, options, torch::kCUDA);
  Peer* cpu = AddPeer(2, options);
  Train(gpu, 3, 11, torch::kCUDA);
  Train(cpu, 3, 12);
  gpu->thread.join();
  cpu->thread.join();
  EXPECT_EQ(gpu->opt->local_epoch(), 3);
  EXPECT_EQ(cpu->opt->local_epoch(), 3);
  EXPECT_GE(gpu->opt->stats().rounds_ok, 1);
  const std::vector<float> a = Flat(gpu->model), b = Flat(cpu->model);
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) ASSERT_NEAR(a[k], b[k], 1e-5) << k;
  EXPECT_TRUE(gpu->model->parameters()[0].is_cuda());
}

TEST_F(OptimizerSwarm, LocalUpdatesAverageParametersAndOptimizerStatistics) {
  OptimizerOptions options = Options();
  options.use_local_updates = true;  // local steps: momentum buffers drift apart
  std::vector<Peer*> peers = {AddPeer(1, options), AddPeer(2, options),
                              AddPeer(3, options)};
  for (Peer* p : peers) Train(p, 2, reinterpret_cast<uintptr_t>(p));
  for (Peer* p : peers) p->thread.join();
  const std::vector<float> momentum = Flat(peers[0]->opt->inner().Statistics());
  ASSERT_EQ(momentum.size(), Flat(peers[0]->model).size());  // one buffer per param
  for (Peer* p : peers) {
    EXPECT_EQ(p->opt->local_epoch(), 2);
    EXPECT_EQ(Flat(p->model), Flat(peers[0]->model));
    EXPECT_EQ(Flat(p->opt->inner().Statistics()), momentum);
  }
}

TEST_F(OptimizerSwarm, DelayedUpdatesOverlapAveragingAndStillAgree) {
  OptimizerOptions options = Options();
  options.delay_updates = true;
  std::vector<Peer*> peers = {AddPeer(1, options), AddPeer(2, options),
                              AddPeer(3, options)};
  for (Peer* p : peers) Train(p, 4, reinterpret_cast<uintptr_t>(p));
  for (Peer* p : peers) p->thread.join();
  for (Peer* p : peers) {
    EXPECT_EQ(p->opt->local_epoch(), 4);
    const OptimizerStats stats = p->opt->stats();
    EXPECT_GT(stats.bytes_sent, 0u);
    EXPECT_GE(stats.rounds_ok, 3);  // gradient rounds applied late, parameter rounds
  }
  // The last parameter round (one group of three) left them equal.
  EXPECT_EQ(Flat(peers[0]->model), Flat(peers[1]->model));
  EXPECT_EQ(Flat(peers[0]->model), Flat(peers[2]->model));
}

TEST_F(OptimizerSwarm, ALatePeerLoadsTheStateAndJoinsAtTheSwarmsEpoch) {
  OptimizerOptions compressed = Options();
  compressed.state_load_zstd_level = 3;  // a donor serving a compressed state
  Peer* a = AddPeer(1, compressed);
  Peer* b = AddPeer(2);
  TrainTogether({a, b}, 2, 11);
  ASSERT_EQ(a->opt->local_epoch(), 2);
  const std::vector<float> swarm = Flat(a->model);
  Peer* late = AddPeer(99);
  EXPECT_NE(Flat(late->model), swarm);
  absl::Status loaded = late->opt->LoadStateFromPeers();
  ASSERT_TRUE(loaded.ok()) << loaded;
  EXPECT_EQ(late->opt->local_epoch(), 2);
  EXPECT_EQ(Flat(late->model), swarm);
  // Its first step, had it been behind, would also have loaded: train on together.
  TrainTogether({a, b, late}, 3, 13);
  for (Peer* p : {a, b, late}) EXPECT_EQ(p->opt->local_epoch(), 3);
}

TEST_F(OptimizerSwarm, APeerThatMissedARoundLoadsTheStateAtItsNextStep) {
  Peer* a = AddPeer(1);
  Peer* b = AddPeer(2);
  TrainTogether({a, b}, 2, 11);
  ASSERT_EQ(Flat(a->model), Flat(b->model));
  const std::vector<float> swarm = Flat(a->model);
  // A peer that never finds a group big enough: its round fails while a and b are
  // there (alive, serving the state of epoch 2).
  OptimizerOptions lonely = Options();
  lonely.min_group_size = 10;
  lonely.target_group_size = 10;
  Peer* c = AddPeer(3, lonely);
  ASSERT_TRUE(c->opt->LoadStateFromPeers().ok());
  ASSERT_EQ(Flat(c->model), swarm);
  torch::manual_seed(5);
  bool stepped_alone = false;
  std::optional<OptimizerStepReport> after;
  for (int i = 0; i < 40 && !after; ++i) {
    absl::StatusOr<OptimizerStepReport> report = StepOnSyntheticBatch(c);
    ASSERT_TRUE(report.ok()) << report.status();
    if (stepped_alone) {
      after = *report;
    } else if (report->epoch_advanced) {
      EXPECT_FALSE(report->averaging_status.ok());
      EXPECT_NE(Flat(c->model), swarm);  // stepped with its own gradients
      stepped_alone = true;
    }
  }
  ASSERT_TRUE(after.has_value()) << "the lonely peer never finished an epoch";
  // The next step loaded the swarm's state instead of training on apart.
  EXPECT_TRUE(after->loaded_state);
  EXPECT_EQ(c->opt->local_epoch(), 2);
  EXPECT_EQ(Flat(c->model), swarm);
}

TEST_F(OptimizerSwarm, APeerBehindWithOnlyAnOlderStateTrainsOnInsteadOfReloading) {
  Peer* a = AddPeer(1);
  Peer* b = AddPeer(2);
  TrainTogether({a, b}, 2, 11);
  const std::vector<float> swarm = Flat(a->model);
  // Someone reports epoch 3, but every donor serves epoch 2.
  DhtOptions d;
  d.run_id = "optim";
  d.initial_peers = {bootstrap_->address()};
  std::unique_ptr<OpenDhtNode> ahead_dht = std::move(OpenDhtNode::Create(d)).value();
  ProgressTrackerOptions t;
  t.prefix = Options().run_id;
  t.target_batch_size = static_cast<uint64_t>(Options().target_batch_size);
  auto ahead = ProgressTracker::Create(ahead_dht.get(), t);
  ASSERT_TRUE(ahead.ok()) << ahead.status();
  (*ahead)->UpdateEpoch(3);
  Peer* late = AddPeer(3);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (late->opt->global_progress().epoch < 3 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(late->opt->global_progress().epoch, 3u);
  torch::manual_seed(7);
  std::vector<bool> loaded;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<OptimizerStepReport> report = StepOnSyntheticBatch(late);
    ASSERT_TRUE(report.ok()) << report.status();
    loaded.push_back(report->loaded_state);
    if (i == 0) {
      EXPECT_EQ(Flat(late->model), swarm);  // the donors' parameters
    }
  }
  // One download, then training at the swarm's epoch: not a download per step.
  EXPECT_EQ(loaded, (std::vector<bool>{true, false, false, false}));
  EXPECT_EQ(late->opt->local_epoch(), 3);
  (*ahead)->Shutdown();
}

TEST_F(OptimizerSwarm, APeerThatDiesMidEpochDoesNotStopTheOthers) {
  Peer* a = AddPeer(1);
  Peer* b = AddPeer(2);
  Peer* c = AddPeer(3);
  for (Peer* p : {a, b, c}) Train(p, 3, reinterpret_cast<uintptr_t>(p));
  // c stops in the middle of the first epoch; its endpoints close.
  absl::SleepFor(absl::Milliseconds(150));
  c->stop = true;
  c->thread.join();
  c->opt->Shutdown();
  const absl::Time start = absl::Now();
  a->thread.join();
  b->thread.join();
  EXPECT_LT(absl::Now() - start, absl::Minutes(2));
  EXPECT_EQ(a->opt->local_epoch(), 3);
  EXPECT_EQ(b->opt->local_epoch(), 3);
  EXPECT_EQ(Flat(a->model), Flat(b->model));
}

TEST_F(OptimizerSwarm, ClientAndAuxiliaryPeersTakePart) {
  Peer* a = AddPeer(1);
  OptimizerOptions client = Options();
  client.mode = MemberMode::kClient;
  client.endpoint.client_mode = true;
  Peer* c = AddPeer(2, client);
  OptimizerOptions aux = Options();
  aux.mode = MemberMode::kAuxiliary;
  Peer* x = AddPeer(3, aux);
  const std::vector<float> aux_params = Flat(x->model);
  x->thread = std::thread([x] {
    while (!x->stop) {
      absl::StatusOr<OptimizerStepReport> report = x->opt->Step(0);
      if (!report.ok()) ADD_FAILURE() << report.status();
    }
  });
  TrainTogether({a, c}, 6, 21);
  x->stop = true;
  x->thread.join();
  EXPECT_EQ(a->opt->local_epoch(), 6);
  EXPECT_EQ(c->opt->local_epoch(), 6);
  EXPECT_GE(x->opt->local_epoch(), 4);  // the auxiliary peer followed the epochs
  EXPECT_EQ(Flat(a->model), Flat(c->model));
  EXPECT_EQ(Flat(x->model), aux_params);  // it never trains
  EXPECT_GT(x->opt->stats().rounds_ok, 0);
}

TEST_F(OptimizerSwarm, TheEpochAdvancesWhenTheSwarmReachesTheTarget) {
  OptimizerOptions options = Options();
  options.target_batch_size = 64;
  options.matchmaking_time = absl::Milliseconds(500);  // alone: averaging fails fast
  Peer* a = AddPeer(1, options);
  torch::manual_seed(5);
  std::vector<bool> advanced;
  for (int step = 0; step < 8; ++step) {
    torch::Tensor x = torch::randn({16, 8});
    a->opt->ZeroGrad();
    torch::mse_loss(a->model->forward(x), torch::zeros({16, 2})).backward();
    absl::StatusOr<OptimizerStepReport> report = a->opt->Step(16);
    ASSERT_TRUE(report.ok()) << report.status();
    advanced.push_back(report->epoch_advanced);
    if (report->epoch_advanced) {
      // Alone, it goes on with its local gradients and says why.
      EXPECT_EQ(report->averaging_status.code(), absl::StatusCode::kDeadlineExceeded);
    }
  }
  // 64 samples = 4 steps of 16: the 4th and the 8th step end an epoch, no other.
  EXPECT_EQ(advanced,
            (std::vector<bool>{false, false, false, true, false, false, false, true}));
  EXPECT_EQ(a->opt->local_epoch(), 2);
}

TEST_F(OptimizerSwarm, CheckpointsRoundTripAndRejectOtherModels) {
  Peer* a = AddPeer(1);
  const std::string path = ::testing::TempDir() + "/hivemind_optim.ckpt";
  ASSERT_TRUE(a->opt->SaveCheckpoint(path).ok());
  const std::vector<float> saved = Flat(a->model);
  {
    torch::NoGradGuard no_grad;
    for (torch::Tensor p : a->model->parameters()) p.add_(1.0f);
  }
  ASSERT_NE(Flat(a->model), saved);
  absl::Status restored = a->opt->LoadCheckpoint(path);
  ASSERT_TRUE(restored.ok()) << restored;
  EXPECT_EQ(Flat(a->model), saved);

  // Another model's checkpoint is refused and changes nothing.
  DhtOptions d;
  d.run_id = "optim";
  auto dht = std::move(OpenDhtNode::Create(d)).value();
  torch::nn::Linear other(3, 3);
  OptimizerOptions o = Options();
  o.run_id = "other";
  auto opt =
      std::move(DecentralizedOptimizer::Create(
                    dht.get(), other->parameters(),
                    std::make_unique<torch::optim::SGD>(other->parameters(), 0.1), o))
          .value();
  EXPECT_EQ(opt->LoadCheckpoint(path).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(opt->LoadCheckpoint(path + ".missing").code(), absl::StatusCode::kNotFound);
  std::FILE* f = std::fopen((path + ".bad").c_str(), "wb");
  std::fputs("not a checkpoint", f);
  std::fclose(f);
  EXPECT_EQ(opt->LoadCheckpoint(path + ".bad").code(), absl::StatusCode::kDataLoss);
}

TEST(DecentralizedOptimizer, RejectsBadArgumentsAndGradients) {
  DhtOptions d;
  d.run_id = "optim";
  auto dht = std::move(OpenDhtNode::Create(d)).value();
  torch::nn::Linear model(2, 2);
  auto make = [&](OptimizerOptions o) {
    return DecentralizedOptimizer::Create(
        dht.get(), model->parameters(),
        std::make_unique<torch::optim::SGD>(model->parameters(), 0.1), o);
  };
  OptimizerOptions o;
  o.run_id = "bad";
  EXPECT_EQ(make(o).status().code(), absl::StatusCode::kInvalidArgument);  // no target
  o.target_batch_size = 10;
  o.endpoint.listen_address = "tcp://127.0.0.1:5555";
  EXPECT_EQ(make(o).status().code(), absl::StatusCode::kInvalidArgument);  // fixed port
  o.endpoint.listen_address = "tcp://127.0.0.1:0";
  o.load_state_min_agreeing_donors = 0;
  EXPECT_EQ(make(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.load_state_min_agreeing_donors = 2;
  auto opt = make(o);
  ASSERT_TRUE(opt.ok()) << opt.status();
  EXPECT_EQ((*opt)->Step(0).status().code(), absl::StatusCode::kInvalidArgument);
  torch::Tensor loss = model->forward(torch::ones({1, 2})).sum() * std::nanf("");
  loss.backward();
  EXPECT_EQ((*opt)->Step(4).status().code(), absl::StatusCode::kInvalidArgument);
  (*opt)->Shutdown();
  EXPECT_EQ((*opt)->Step(4).status().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace hivemind
