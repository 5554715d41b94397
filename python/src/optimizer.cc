// Bindings of DecentralizedOptimizer (hivemind/optim/optimizer.h) over a torch.optim
// optimizer, and of the progress view (hivemind/optim/progress_tracker.h).
//
// The wrapped Python optimizer is called only from DecentralizedOptimizer's caller
// thread (Create, Step, LoadStateFromPeers, Save/LoadCheckpoint), which released the
// GIL before calling in; PyInnerOptimizer takes it back for each call. The
// optimizer's background threads (progress tracking, averaging, state serving)
// never call the InnerOptimizer.
#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common.h"
#include "hivemind/codec/factory.h"
#include "hivemind/optim/optimizer.h"
#include "hivemind/optim/progress_tracker.h"

namespace hivemind {
namespace python {
namespace {

// A torch.optim optimizer (any object with step, zero_grad, state_dict and
// load_state_dict) as the C++ optimizer's InnerOptimizer. State bytes are
// torch.save(optimizer.state_dict()).
class PyInnerOptimizer : public InnerOptimizer {
 public:
  explicit PyInnerOptimizer(py::object optimizer) : optimizer_(std::move(optimizer)) {}
  ~PyInnerOptimizer() override {
    py::gil_scoped_acquire gil;
    optimizer_ = py::object();
    error_.reset();
  }

  absl::Status Step() override {
    return Call("step()", [this] { optimizer_.attr("step")(); });
  }
  void ZeroGrad() override {
    Call("zero_grad()", [this] { optimizer_.attr("zero_grad")(); }).IgnoreError();
  }

  absl::StatusOr<std::string> SaveState() override {
    py::gil_scoped_acquire gil;
    try {
      py::object buffer = py::module_::import("io").attr("BytesIO")();
      py::module_::import("torch").attr("save")(optimizer_.attr("state_dict")(), buffer);
      return buffer.attr("getvalue")().cast<std::string>();
    } catch (const std::exception& e) {
      return absl::InternalError(
          absl::StrCat("cannot save the optimizer's state_dict: ", e.what()));
    }
  }

  absl::Status LoadState(const std::string& bytes) override {
    py::gil_scoped_acquire gil;
    try {
      py::object buffer = py::module_::import("io").attr("BytesIO")(py::bytes(bytes));
      py::object state = py::module_::import("torch").attr("load")(buffer);
      optimizer_.attr("load_state_dict")(state);
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return absl::DataLossError(
          absl::StrCat("cannot read the optimizer state: ", e.what()));
    }
  }

  // The float32 state tensors shaped like their parameter (Adam's exp_avg and
  // exp_avg_sq, SGD's momentum_buffer, ...), per parameter in group order and by
  // key name, so every peer with the same optimizer lists them alike.
  std::vector<torch::Tensor> Statistics() override {
    py::gil_scoped_acquire gil;
    std::vector<torch::Tensor> out;
    try {
      py::dict state = optimizer_.attr("state");
      for (py::handle group : optimizer_.attr("param_groups")) {
        for (py::handle param : group["params"]) {
          if (!state.contains(param)) continue;
          const torch::Tensor p = param.cast<torch::Tensor>();
          py::dict entries = state[param];
          std::vector<std::string> keys;
          for (auto item : entries) keys.push_back(py::str(item.first));
          std::sort(keys.begin(), keys.end());
          for (const std::string& key : keys) {
            py::object value = entries[py::str(key)];
            if (!THPVariable_Check(value.ptr())) continue;
            torch::Tensor t = value.cast<torch::Tensor>();
            if (t.dim() > 0 && t.sizes() == p.sizes() &&
                t.scalar_type() == torch::kFloat && t.is_contiguous() &&
                t.device().is_cpu()) {
              out.push_back(t);
            }
          }
        }
      }
    } catch (const std::exception&) {
      return {};  // an optimizer without the usual state layout: nothing averaged
    }
    return out;
  }

  // The first Python exception raised by step() or zero_grad() since the last
  // call; the caller re-raises it. Requires the GIL.
  std::optional<py::error_already_set> TakeError() {
    std::optional<py::error_already_set> out = std::move(error_);
    error_.reset();
    return out;
  }

  const py::object& optimizer() const { return optimizer_; }

 private:
  template <typename Fn>
  absl::Status Call(const char* what, Fn&& fn) {
    py::gil_scoped_acquire gil;
    try {
      fn();
      return absl::OkStatus();
    } catch (py::error_already_set& e) {
      const std::string message = absl::StrCat("optimizer.", what, " raised: ", e.what());
      if (!error_) error_ = std::move(e);
      return absl::InternalError(message);
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("optimizer.", what, " failed: ", e.what()));
    }
  }

  py::object optimizer_;
  std::optional<py::error_already_set> error_;
};

struct OptimizerHolder {
  std::shared_ptr<DhtHolder> dht;
  std::shared_ptr<Codec> grad_codec;
  std::shared_ptr<Codec> state_codec;
  PyInnerOptimizer* inner = nullptr;  // owned by `optimizer`
  std::unique_ptr<DecentralizedOptimizer> optimizer;
  bool shut_down = false;

  ~OptimizerHolder() {
    WithoutGil([this] { optimizer.reset(); });
  }
  DecentralizedOptimizer& live() {
    if (shut_down) RaiseStatus(absl::CancelledError("the optimizer has shut down"));
    return *optimizer;
  }
  // Re-raises what the Python optimizer raised during the last call.
  void RethrowInnerError() {
    if (std::optional<py::error_already_set> error = inner->TakeError()) throw *error;
  }
  // Runs `fn` (a blocking call that may call back into Python) without the GIL.
  template <typename Fn>
  auto Blocking(Fn&& fn) {
    decltype(fn()) result;
    {
      py::gil_scoped_release release;
      result = fn();
    }
    RethrowInnerError();
    return result;
  }
};

std::shared_ptr<Codec> CodecOf(const py::object& spec) {
  if (spec.is_none()) return nullptr;
  if (py::isinstance<Codec>(spec)) return spec.cast<std::shared_ptr<Codec>>();
  const std::string text = spec.cast<std::string>();
  if (text.empty() || text == "none") return nullptr;
  return std::shared_ptr<Codec>(ValueOrRaise(CreateCodecFromSpec(text)));
}

void CheckParams(const std::vector<torch::Tensor>& params) {
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].requires_grad()) {
      RaiseStatus(absl::InvalidArgumentError(
          absl::StrCat("parameter ", i, " does not require grad")));
    }
  }
}

std::shared_ptr<OptimizerHolder> MakeOptimizer(
    std::shared_ptr<DhtHolder> dht, std::vector<torch::Tensor> params,
    py::object optimizer, std::string run_id, int64_t target_batch_size,
    int64_t batch_size_per_step, const py::object& grad_compression,
    const py::object& state_compression, bool grad_error_feedback, bool use_local_updates,
    bool delay_updates, double diloco_outer_lr, double diloco_outer_momentum,
    int average_state_every, double matchmaking_time, int target_group_size,
    int min_group_size, double averaging_timeout, double load_state_timeout,
    bool client_mode, bool auxiliary, std::string listen, double bandwidth,
    int load_state_max_donors, std::string progress_log, const std::string& aggregation,
    double clip_tau, double clip_reject_ratio, std::string swarm_secret,
    std::vector<std::string> authorized_peers, bool encrypt,
    int load_state_min_agreeing_donors) {
  if (dht->shut_down()) RaiseStatus(absl::CancelledError("the DHT has shut down"));
  CheckParams(params);
  auto holder = std::make_shared<OptimizerHolder>();
  holder->dht = std::move(dht);
  holder->grad_codec = CodecOf(grad_compression);
  holder->state_codec = CodecOf(state_compression);

  OptimizerOptions o;
  o.run_id = std::move(run_id);
  o.target_batch_size = target_batch_size;
  o.batch_size_per_step = batch_size_per_step;
  o.matchmaking_time = Seconds(matchmaking_time, "matchmaking_time");
  o.target_group_size = target_group_size;
  o.min_group_size = min_group_size;
  o.averaging_timeout = Seconds(averaging_timeout, "averaging_timeout");
  o.load_state_timeout = Seconds(load_state_timeout, "load_state_timeout");
  o.average_state_every = average_state_every;
  o.grad_codec = holder->grad_codec.get();
  o.state_codec = holder->state_codec.get();
  o.grad_error_feedback = grad_error_feedback;
  o.aggregation.method = ValueOrRaise(ParseAggregation(aggregation));
  o.aggregation.clip_tau = static_cast<float>(clip_tau);
  o.aggregation.clip_reject_ratio = static_cast<float>(clip_reject_ratio);
  o.delay_updates = delay_updates;
  o.use_local_updates = use_local_updates;
  o.diloco_outer_lr = diloco_outer_lr;
  o.diloco_outer_momentum = diloco_outer_momentum;
  o.mode = client_mode ? MemberMode::kClient
                       : (auxiliary ? MemberMode::kAuxiliary : MemberMode::kNode);
  o.endpoint.client_mode = client_mode;
  o.endpoint.swarm_secret = std::move(swarm_secret);
  o.endpoint.authorized_peers = std::move(authorized_peers);
  o.endpoint.encrypt = encrypt;
  o.endpoint.listen_address =
      absl::StartsWith(listen, "tcp://") ? listen : absl::StrCat("tcp://", listen);
  o.bandwidth = bandwidth;
  o.load_state_max_donors = load_state_max_donors;
  o.load_state_min_agreeing_donors = load_state_min_agreeing_donors;
  if (!progress_log.empty()) o.on_epoch = AppendEpochJsonLines(std::move(progress_log));

  auto inner = std::make_unique<PyInnerOptimizer>(std::move(optimizer));
  holder->inner = inner.get();
  absl::StatusOr<std::unique_ptr<DecentralizedOptimizer>> created;
  {
    py::gil_scoped_release release;
    created = DecentralizedOptimizer::Create(holder->dht->node(), std::move(params),
                                             std::move(inner), std::move(o));
  }
  if (!created.ok()) holder->inner = nullptr;  // destroyed with `inner`
  holder->optimizer = ValueOrRaise(std::move(created));
  holder->RethrowInnerError();
  return holder;
}

struct PyStepReport {
  bool epoch_advanced = false;
  bool loaded_state = false;
  bool averaging_ok = true;
  std::string averaging_error;
  int group_size = 1;
  int64_t epoch = 0;
};

void BindProgress(py::module_& m) {
  py::class_<GlobalProgress>(m, "GlobalProgress", R"doc(
The swarm's progress toward its next epoch, as this peer sees it.

epoch: the swarm's epoch; samples_accumulated: samples the peers gathered at it;
target_batch_size; num_peers (this one included) and num_clients; samples_per_second:
the swarm's throughput; eta_next_epoch: unix time at which the swarm should reach
the target (inf without an estimate); next_fetch_time: when the DHT is read next.)doc")
      .def_readonly("epoch", &GlobalProgress::epoch)
      .def_readonly("samples_accumulated", &GlobalProgress::samples_accumulated)
      .def_readonly("target_batch_size", &GlobalProgress::target_batch_size)
      .def_readonly("num_peers", &GlobalProgress::num_peers)
      .def_readonly("num_clients", &GlobalProgress::num_clients)
      .def_readonly("samples_per_second", &GlobalProgress::samples_per_second)
      .def_property_readonly(
          "eta_next_epoch",
          [](const GlobalProgress& g) { return UnixSeconds(g.eta_next_epoch); })
      .def_property_readonly(
          "next_fetch_time",
          [](const GlobalProgress& g) { return UnixSeconds(g.next_fetch_time); })
      .def("__repr__", [](const GlobalProgress& g) {
        return absl::StrCat("GlobalProgress(epoch=", g.epoch,
                            ", samples_accumulated=", g.samples_accumulated, "/",
                            g.target_batch_size, ", num_peers=", g.num_peers,
                            ", samples_per_second=", g.samples_per_second, ")");
      });

  py::class_<OptimizerStats>(m, "OptimizerStats", "Counters since the optimizer began.")
      .def_readonly("bytes_sent", &OptimizerStats::bytes_sent)
      .def_readonly("bytes_received", &OptimizerStats::bytes_received)
      .def_readonly("rounds_ok", &OptimizerStats::rounds_ok)
      .def_readonly("rounds_failed", &OptimizerStats::rounds_failed)
      .def_property_readonly(
          "wait_time",
          [](const OptimizerStats& s) { return absl::ToDoubleSeconds(s.wait_time); },
          "seconds step() spent waiting for averaging and state downloads")
      .def("__repr__", [](const OptimizerStats& s) {
        return absl::StrCat("OptimizerStats(bytes_sent=", s.bytes_sent,
                            ", rounds_ok=", s.rounds_ok,
                            ", rounds_failed=", s.rounds_failed, ")");
      });

  py::class_<PyStepReport>(m, "StepReport", "What one Optimizer.step() did.")
      .def_readonly("epoch_advanced", &PyStepReport::epoch_advanced,
                    "this call ended an epoch")
      .def_readonly("loaded_state", &PyStepReport::loaded_state,
                    "this call downloaded the swarm's state")
      .def_readonly("averaging_ok", &PyStepReport::averaging_ok)
      .def_property_readonly(
          "averaging_error",
          [](const PyStepReport& r) -> py::object {
            if (r.averaging_ok) return py::none();
            return py::str(r.averaging_error);
          },
          "why averaging failed this epoch (None when it succeeded)")
      .def_readonly("group_size", &PyStepReport::group_size)
      .def_readonly("epoch", &PyStepReport::epoch, "the local epoch after the call")
      .def("__repr__", [](const PyStepReport& r) {
        return absl::StrCat("StepReport(epoch=", r.epoch,
                            ", epoch_advanced=", r.epoch_advanced ? "True" : "False",
                            ", group_size=", r.group_size, ")");
      });

  m.def(
      "read_progress",
      [](std::shared_ptr<DhtHolder> dht, const std::string& run_id, double timeout) {
        absl::StatusOr<std::vector<PeerProgress>> records;
        const absl::Duration wait = Seconds(timeout, "timeout");
        {
          py::gil_scoped_release release;
          records = ReadProgress(dht->node(), run_id, wait);
        }
        py::list out;
        for (const PeerProgress& p : ValueOrRaise(std::move(records))) {
          py::dict d;
          d["peer_id"] = p.peer_id;
          d["epoch"] = p.epoch;
          d["samples_accumulated"] = p.samples_accumulated;
          d["samples_per_second"] = p.samples_per_second;
          d["time"] = UnixSeconds(p.time);
          d["client_mode"] = p.client_mode;
          out.append(d);
        }
        return out;
      },
      py::arg("dht"), py::arg("run_id"), py::kw_only(), py::arg("timeout") = 10.0,
      "Every live peer's progress record of a run (a swarm monitor), as dicts.");
}

}  // namespace

void BindOptimizer(py::module_& m) {
  BindProgress(m);
  py::class_<OptimizerHolder, std::shared_ptr<OptimizerHolder>>(
      m, "_DecentralizedOptimizer",
      "The C++ DecentralizedOptimizer; use hivemind_cpp.Optimizer, which wraps it.")
      .def(py::init(&MakeOptimizer), py::arg("dht"), py::arg("params"),
           py::arg("optimizer"), py::kw_only(), py::arg("run_id"),
           py::arg("target_batch_size"), py::arg("batch_size_per_step"),
           py::arg("grad_compression"), py::arg("state_compression"),
           py::arg("grad_error_feedback"), py::arg("use_local_updates"),
           py::arg("delay_updates"), py::arg("diloco_outer_lr"),
           py::arg("diloco_outer_momentum"), py::arg("average_state_every"),
           py::arg("matchmaking_time"), py::arg("target_group_size"),
           py::arg("min_group_size"), py::arg("averaging_timeout"),
           py::arg("load_state_timeout"), py::arg("client_mode"), py::arg("auxiliary"),
           py::arg("listen"), py::arg("bandwidth"), py::arg("load_state_max_donors"),
           py::arg("progress_log"), py::arg("aggregation") = "mean",
           py::arg("clip_tau") = 0.0, py::arg("clip_reject_ratio") = 10.0,
           py::arg("swarm_secret") = "",
           py::arg("authorized_peers") = std::vector<std::string>{},
           py::arg("encrypt") = true, py::arg("load_state_min_agreeing_donors") = 1)
      .def(
          "step",
          [](OptimizerHolder& h, int64_t batch_size, double loss) {
            DecentralizedOptimizer& opt = h.live();
            absl::StatusOr<OptimizerStepReport> report =
                h.Blocking([&] { return opt.Step(batch_size, loss); });
            const OptimizerStepReport r = ValueOrRaise(std::move(report));
            PyStepReport out;
            out.epoch_advanced = r.epoch_advanced;
            out.loaded_state = r.loaded_state;
            out.averaging_ok = r.averaging_status.ok();
            out.averaging_error = r.averaging_status.ToString();
            out.group_size = r.group_size;
            out.epoch = r.epoch;
            return out;
          },
          py::arg("batch_size"), py::arg("loss"))
      .def("zero_grad",
           [](OptimizerHolder& h) {
             h.live().ZeroGrad();
             h.RethrowInnerError();
           })
      .def("load_state_from_peers",
           [](OptimizerHolder& h) {
             DecentralizedOptimizer& opt = h.live();
             ThrowIfError(h.Blocking([&] { return opt.LoadStateFromPeers(); }));
           })
      .def("finish",
           [](OptimizerHolder& h, double window) {
             DecentralizedOptimizer& opt = h.live();
             const absl::Duration d = Seconds(window, "window");
             ThrowIfError(h.Blocking([&] { return opt.Finish(d); }));
           })
      .def("save_checkpoint",
           [](OptimizerHolder& h, const std::string& path) {
             DecentralizedOptimizer& opt = h.live();
             ThrowIfError(h.Blocking([&] { return opt.SaveCheckpoint(path); }));
           })
      .def("load_checkpoint",
           [](OptimizerHolder& h, const std::string& path) {
             DecentralizedOptimizer& opt = h.live();
             ThrowIfError(h.Blocking([&] { return opt.LoadCheckpoint(path); }));
           })
      .def_property_readonly(
          "local_epoch", [](OptimizerHolder& h) { return h.optimizer->local_epoch(); })
      .def_property_readonly(
          "progress", [](OptimizerHolder& h) { return h.optimizer->global_progress(); })
      .def_property_readonly("stats",
                             [](OptimizerHolder& h) { return h.optimizer->stats(); })
      .def_property_readonly("peer_id",
                             [](OptimizerHolder& h) { return h.optimizer->id(); })
      .def_property_readonly("is_alive", [](OptimizerHolder& h) { return !h.shut_down; })
      .def("shutdown", [](OptimizerHolder& h) {
        {
          py::gil_scoped_release release;
          h.optimizer->Shutdown();
        }
        h.shut_down = true;
      });
}

}  // namespace python
}  // namespace hivemind
