// Bindings of DecentralizedAverager, StepHandle and TensorLock
// (hivemind/averaging/averager.h) and of state sharing
// (hivemind/averaging/state_sharing.h) over an averager's endpoint.
#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common.h"
#include "hivemind/averaging/averager.h"
#include "hivemind/averaging/state_sharing.h"
#include "hivemind/codec/factory.h"
#include "hivemind/net/endpoint.h"

namespace hivemind {
namespace python {
namespace {

// The averager as Python sees it. Tensor views handed out by get_tensors() keep it
// alive (their storage's deleter holds a shared_ptr), so a view never dangles.
struct AveragerHolder {
  std::shared_ptr<DhtHolder> dht;
  std::shared_ptr<Codec> codec;  // null: raw float32
  std::unique_ptr<DecentralizedAverager> averager;
  std::vector<std::vector<int64_t>> shapes;
  std::vector<size_t> sizes;
  bool shut_down = false;

  ~AveragerHolder() {
    WithoutGil([this] { averager.reset(); });
  }
  DecentralizedAverager& live() {
    if (shut_down) RaiseStatus(absl::CancelledError("the averager has shut down"));
    return *averager;
  }
  void Shutdown() {
    py::gil_scoped_release release;
    averager->Shutdown();
    shut_down = true;
  }
};

struct PyStepResult {
  int group_size = 0;
  int my_index = 0;
  std::vector<std::string> peer_ids;
  std::vector<std::string> gathered;
  std::string group_id;
  int attempts = 0;
  std::string group_bits;
  std::vector<std::string> span_errors;  // one per span that kept local values
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  double seconds = 0.0;
};

PyStepResult ToPython(const StepResult& r) {
  PyStepResult out;
  out.group_size = static_cast<int>(r.group.members.size());
  out.my_index = r.my_index;
  for (const GroupMember& member : r.group.members) {
    out.peer_ids.push_back(member.peer_id);
    out.gathered.push_back(member.user_data);
  }
  out.group_id = r.group.group_id;
  out.attempts = r.attempts;
  out.group_bits = r.group_bits;
  for (const SpanOutcome& span : r.report.spans) {
    if (!span.status.ok()) {
      out.span_errors.push_back(
          absl::StrCat("span of member ", span.reducer, ": ", span.status.ToString()));
    }
  }
  out.bytes_sent = r.report.bytes_sent;
  out.bytes_received = r.report.bytes_received;
  out.seconds = absl::ToDoubleSeconds(r.report.total_time);
  return out;
}

const char* StageName(StepStage stage) {
  switch (stage) {
    case StepStage::kQueued:
      return "queued";
    case StepStage::kLookingForGroup:
      return "looking_for_group";
    case StepStage::kAveraging:
      return "averaging";
    case StepStage::kDone:
      return "done";
  }
  return "unknown";
}

// Waits for `handle` without the GIL, in slices so that Ctrl-C (a pending signal)
// cancels the step and raises KeyboardInterrupt. `timeout` < 0: no limit.
PyStepResult WaitForStep(const StepHandle& handle, double timeout) {
  const absl::Time deadline =
      timeout < 0 ? absl::InfiniteFuture() : absl::Now() + absl::Seconds(timeout);
  for (;;) {
    bool done = false;
    {
      py::gil_scoped_release release;
      done = handle.WaitFor(std::min(absl::Milliseconds(100), deadline - absl::Now()));
    }
    if (done) break;
    if (PyErr_CheckSignals() != 0) {
      handle.Cancel();
      throw py::error_already_set();
    }
    if (absl::Now() >= deadline) {
      RaiseStatus(absl::DeadlineExceededError(
          absl::StrCat("the step is not done after ", timeout, " s")));
    }
  }
  absl::StatusOr<StepResult> result;
  {
    py::gil_scoped_release release;
    result = handle.Wait();
  }
  return ToPython(ValueOrRaise(std::move(result)));
}

struct PyStepHandle {
  StepHandle handle;
  std::shared_ptr<AveragerHolder> holder;  // keeps the averager alive
};

// Tensor specs: a tensor (its shape; its values are copied in), an int (a 1-D
// size) or a shape (a sequence of ints).
void ReadSpecs(const py::sequence& specs, std::vector<std::vector<int64_t>>* shapes,
               std::vector<torch::Tensor>* initial) {
  for (const py::handle spec : specs) {
    if (THPVariable_Check(spec.ptr())) {
      torch::Tensor t = THPVariable_Unpack(spec.ptr());
      if (!t.device().is_cpu() || !t.is_floating_point()) {
        RaiseStatus(absl::InvalidArgumentError(
            "averaged tensors must be floating-point CPU tensors"));
      }
      shapes->push_back(t.sizes().vec());
      initial->push_back(t.detach().to(torch::kFloat).contiguous());
    } else if (py::isinstance<py::int_>(spec)) {
      shapes->push_back({spec.cast<int64_t>()});
      initial->emplace_back();
    } else {
      shapes->push_back(spec.cast<std::vector<int64_t>>());
      initial->emplace_back();
    }
  }
}

std::shared_ptr<AveragerHolder> MakeAverager(
    std::shared_ptr<DhtHolder> dht, const py::sequence& tensors, std::string prefix,
    int target_group_size, int min_group_size, double matchmaking_time,
    const py::object& compression, bool error_feedback, bool delta_mode,
    int group_bits_length, std::string initial_group_bits, std::string listen,
    bool client_mode, bool auxiliary, double bandwidth, uint32_t part_size,
    int max_parts_in_flight, double sender_timeout, double allreduce_timeout,
    std::string swarm_secret, std::vector<std::string> authorized_peers, bool encrypt) {
  if (dht->shut_down()) RaiseStatus(absl::CancelledError("the DHT has shut down"));
  auto holder = std::make_shared<AveragerHolder>();
  holder->dht = std::move(dht);
  std::vector<torch::Tensor> initial;
  ReadSpecs(tensors, &holder->shapes, &initial);
  for (const auto& shape : holder->shapes) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    if (numel < 0) RaiseStatus(absl::InvalidArgumentError("negative tensor size"));
    holder->sizes.push_back(static_cast<size_t>(numel));
  }
  if (py::isinstance<Codec>(compression)) {
    holder->codec = compression.cast<std::shared_ptr<Codec>>();
  } else if (!compression.is_none()) {
    holder->codec = std::shared_ptr<Codec>(
        ValueOrRaise(CreateCodecFromSpec(compression.cast<std::string>())));
  }
  AveragerOptions o;
  o.prefix = std::move(prefix);
  o.endpoint.listen_address =
      absl::StartsWith(listen, "tcp://") ? listen : absl::StrCat("tcp://", listen);
  o.endpoint.client_mode = client_mode;
  o.endpoint.swarm_secret = std::move(swarm_secret);
  o.endpoint.authorized_peers = std::move(authorized_peers);
  o.endpoint.encrypt = encrypt;
  o.mode = client_mode ? MemberMode::kClient
                       : (auxiliary ? MemberMode::kAuxiliary : MemberMode::kNode);
  o.bandwidth = bandwidth;
  o.target_group_size = target_group_size;
  o.min_group_size = min_group_size;
  o.matchmaking_time = Seconds(matchmaking_time, "matchmaking_time");
  o.group_bits_length = group_bits_length;
  o.initial_group_bits = std::move(initial_group_bits);
  o.codec = holder->codec.get();
  o.error_feedback = error_feedback;
  o.delta_mode = delta_mode;
  o.part_size = part_size;
  o.max_parts_in_flight = max_parts_in_flight;
  o.sender_timeout = Seconds(sender_timeout, "sender_timeout");
  o.allreduce_timeout = Seconds(allreduce_timeout, "allreduce_timeout");
  absl::StatusOr<std::unique_ptr<DecentralizedAverager>> averager;
  {
    py::gil_scoped_release release;
    averager =
        DecentralizedAverager::Create(holder->dht->node(), holder->sizes, std::move(o));
  }
  holder->averager = ValueOrRaise(std::move(averager));
  TensorLock lock = holder->averager->LockTensors();
  for (size_t i = 0; i < initial.size(); ++i) {
    if (!initial[i].defined()) continue;
    std::memcpy(lock.tensor(i).data(), initial[i].data_ptr<float>(),
                holder->sizes[i] * sizeof(float));
  }
  return holder;
}

// get_tensors(): `with averager.get_tensors() as tensors:` holds the averager's
// tensor lock; the tensors are views of its buffer (no copy).
struct PyTensorLock {
  std::shared_ptr<AveragerHolder> holder;
  std::optional<TensorLock> lock;

  ~PyTensorLock() { lock.reset(); }

  py::list Enter() {
    if (lock)
      RaiseStatus(absl::FailedPreconditionError("the tensors are already locked"));
    DecentralizedAverager& averager = holder->live();
    {
      py::gil_scoped_release release;
      lock.emplace(averager.LockTensors());
    }
    py::list views;
    for (size_t i = 0; i < holder->shapes.size(); ++i) {
      std::shared_ptr<AveragerHolder> keep = holder;
      views.append(torch::from_blob(
          lock->tensor(i).data(), holder->shapes[i],
          [keep](void*) mutable { keep.reset(); }, torch::kFloat));
    }
    return views;
  }
  void Exit() { lock.reset(); }
};

struct PyPeerState {
  int64_t epoch = 0;
  std::string metadata;
  torch::Tensor values;
  std::string extra;
};

struct PyStateServer {
  std::shared_ptr<AveragerHolder> holder;  // its endpoint serves
  std::unique_ptr<StateServer> server;
  ~PyStateServer() {
    WithoutGil([this] { server.reset(); });
  }
};

void BindStateSharing(py::module_& m) {
  py::class_<PyPeerState>(m, "PeerState", "A peer's shared state (state sharing).")
      .def(py::init([](int64_t epoch, const torch::Tensor& values, const py::bytes& extra,
                       const py::bytes& metadata) {
             PyPeerState s;
             s.epoch = epoch;
             s.values = values.detach().to(torch::kFloat).contiguous().view(-1);
             s.extra = extra;
             s.metadata = metadata;
             return s;
           }),
           py::arg("epoch"), py::arg("values"), py::arg("extra") = py::bytes(),
           py::arg("metadata") = py::bytes())
      .def_readonly("epoch", &PyPeerState::epoch)
      .def_readonly("values", &PyPeerState::values, "every value, flat (float32)")
      .def_property_readonly("extra",
                             [](const PyPeerState& s) { return py::bytes(s.extra); })
      .def_property_readonly("metadata",
                             [](const PyPeerState& s) { return py::bytes(s.metadata); });

  py::class_<PyStateServer>(m, "StateServer", R"doc(
Serves this peer's latest published state to loaders, over an averager's endpoint.

StateServer(averager, *, prefix, stripe_bytes=1 MiB, advert_ttl=60.0,
            refresh_period=20.0). Loaders call load_state_from_peers(averager,
prefix=...) with the same prefix. One background thread (no Python); shutdown()
joins it.)doc")
      .def(py::init([](std::shared_ptr<AveragerHolder> averager, std::string prefix,
                       uint32_t stripe_bytes, double advert_ttl, double refresh_period) {
             StateServerOptions o;
             o.prefix = std::move(prefix);
             o.stripe_bytes = stripe_bytes;
             o.advert_ttl = Seconds(advert_ttl, "advert_ttl");
             o.refresh_period = Seconds(refresh_period, "refresh_period");
             auto out = std::make_unique<PyStateServer>();
             Endpoint* endpoint = averager->live().endpoint();
             out->holder = std::move(averager);
             out->server = ValueOrRaise(
                 StateServer::Create(endpoint, out->holder->dht->node(), std::move(o)));
             return out;
           }),
           py::arg("averager"), py::kw_only(), py::arg("prefix"),
           py::arg("stripe_bytes") = 1u << 20, py::arg("advert_ttl") = 60.0,
           py::arg("refresh_period") = 20.0)
      .def(
          "publish",
          [](PyStateServer& s, const PyPeerState& state, bool wait_for_advert) {
            PeerState c;
            c.epoch = state.epoch;
            c.metadata = state.metadata;
            c.extra = state.extra;
            const float* v = state.values.data_ptr<float>();
            c.values.assign(v, v + state.values.numel());
            absl::Status status;
            {
              py::gil_scoped_release release;
              status = s.server->Publish(c);
              if (status.ok() && wait_for_advert) {
                status = s.server->WaitForAdvert(absl::Seconds(60));
              }
            }
            ThrowIfError(status);
          },
          py::arg("state"), py::kw_only(), py::arg("wait_for_advert") = true,
          "Starts serving `state` (a PeerState); its advert is stored in the DHT by "
          "the server's thread. With wait_for_advert (the default), returns once the "
          "advert is stored and raises if the store failed.")
      .def(
          "shutdown",
          [](PyStateServer& s) {
            py::gil_scoped_release release;
            s.server->Shutdown();
          },
          "Stops serving and joins the thread. Idempotent.");

  m.def(
      "retain_freed_memory", [] { ThrowIfError(RetainFreedMemory()); },
      "Makes glibc's malloc keep freed memory for reuse (process-wide): ZeroMQ's "
      "received messages then stop faulting in fresh pages every round. Call once at "
      "start-up. Raises UnimplementedError where malloc is not glibc's.");
  m.def(
      "load_state_from_peers",
      [](std::shared_ptr<AveragerHolder> averager, std::string prefix, double timeout,
         int max_donors, int min_agreeing_donors) {
        LoadStateOptions o;
        o.prefix = std::move(prefix);
        o.timeout = Seconds(timeout, "timeout");
        o.max_donors = max_donors;
        o.min_agreeing_donors = min_agreeing_donors;
        Endpoint* endpoint = averager->live().endpoint();
        absl::StatusOr<PeerState> state;
        {
          py::gil_scoped_release release;
          state = LoadStateFromPeers(endpoint, averager->dht->node(), o);
        }
        PeerState loaded = ValueOrRaise(std::move(state));
        PyPeerState out;
        out.epoch = loaded.epoch;
        out.metadata = std::move(loaded.metadata);
        out.extra = std::move(loaded.extra);
        out.values =
            torch::empty({static_cast<int64_t>(loaded.values.size())}, torch::kFloat);
        std::memcpy(out.values.data_ptr<float>(), loaded.values.data(),
                    loaded.values.size() * sizeof(float));
        return out;
      },
      py::arg("averager"), py::kw_only(), py::arg("prefix"), py::arg("timeout") = 300.0,
      py::arg("max_donors") = 3, py::arg("min_agreeing_donors") = 1,
      "Downloads the most advanced state advertised under prefix (by at least "
      "min_agreeing_donors peers), through the averager's endpoint. Raises "
      "NotFoundError (nobody serves, or too few agree), UnavailableError, "
      "DeadlineExceededError, DataLossError.");
}

}  // namespace

void BindAverager(py::module_& m) {
  py::class_<PyStepResult>(m, "AveragingResult", "What one averaging step did.")
      .def_readonly("group_size", &PyStepResult::group_size)
      .def_readonly("my_index", &PyStepResult::my_index, "this peer's place in the group")
      .def_readonly("peer_ids", &PyStepResult::peer_ids, "the members, in group order")
      .def_property_readonly(
          "gathered",
          [](const PyStepResult& r) {
            py::list out;
            for (const std::string& g : r.gathered) out.append(py::bytes(g));
            return out;
          },
          "every member's `gather` payload (bytes), in group order")
      .def_property_readonly("group_id",
                             [](const PyStepResult& r) { return py::bytes(r.group_id); })
      .def_readonly("attempts", &PyStepResult::attempts)
      .def_readonly("group_bits", &PyStepResult::group_bits)
      .def_property_readonly(
          "fully_averaged", [](const PyStepResult& r) { return r.span_errors.empty(); },
          "False when part of the tensors kept local values (see span_errors)")
      .def_readonly("span_errors", &PyStepResult::span_errors)
      .def_readonly("bytes_sent", &PyStepResult::bytes_sent)
      .def_readonly("bytes_received", &PyStepResult::bytes_received)
      .def_readonly("seconds", &PyStepResult::seconds, "the all-reduce's duration")
      .def("__repr__", [](const PyStepResult& r) {
        return absl::StrCat(
            "AveragingResult(group_size=", r.group_size, ", my_index=", r.my_index,
            ", fully_averaged=", r.span_errors.empty() ? "True" : "False", ")");
      });

  py::class_<PyStepHandle>(m, "StepControl", R"doc(
A running averaging step (DecentralizedAverager.step(wait=False)).

stage: "queued", "looking_for_group", "averaging" or "done". result(timeout=None)
waits (without the GIL) and returns the AveragingResult or raises the step's error.
Thread-safe.)doc")
      .def_property_readonly(
          "stage", [](const PyStepHandle& h) { return StageName(h.handle.stage()); })
      .def("done", [](const PyStepHandle& h) { return h.handle.done(); })
      .def(
          "result",
          [](const PyStepHandle& h, std::optional<double> timeout) {
            return WaitForStep(h.handle, timeout ? *timeout : -1.0);
          },
          py::arg("timeout") = py::none(),
          "Waits for the step; raises DeadlineExceededError if `timeout` seconds pass "
          "first (the step goes on), or the step's own error.")
      .def(
          "cancel", [](const PyStepHandle& h) { h.handle.Cancel(); },
          "Cancels the step unless its all-reduce began (then it finishes).");

  py::class_<PyTensorLock>(m, "TensorLock", R"doc(
Exclusive access to an averager's tensors: `with averager.get_tensors() as tensors:`
gives torch tensors that view the averager's buffer (no copy). No step reads or
writes them until the block ends; use the views only inside it.)doc")
      .def("__enter__", &PyTensorLock::Enter)
      .def("__exit__", [](PyTensorLock& l, const py::args&) {
        l.Exit();
        return false;
      });

  py::class_<AveragerHolder, std::shared_ptr<AveragerHolder>>(m, "DecentralizedAverager",
                                                              R"doc(
Tensors this peer averages with the swarm, one step at a time, in the background.

DecentralizedAverager(dht, tensors, *, prefix, target_group_size=16,
    min_group_size=2, matchmaking_time=5.0, compression=None, error_feedback=False,
    delta_mode=False, group_bits_length=0, initial_group_bits="",
    listen="127.0.0.1:0", client_mode=False, auxiliary=False, bandwidth=0.0,
    part_size=0, max_parts_in_flight=4, sender_timeout=10.0, allreduce_timeout=60.0,
    swarm_secret="", authorized_peers=(), encrypt=True)

tensors: a sequence of torch tensors (their shapes and values are copied into the
    averager's own float32 buffer), ints (1-D sizes, zero-filled) or shapes.
prefix: DHT key prefix; peers averaging the same tensors use the same prefix.
compression: a codec spec ("blockwise4", ...) or a Codec for what this peer sends.
listen: the averager's TCP address (port 0: a free one).
swarm_secret, authorized_peers: a private swarm (docs/security.md): only peers that
    know the same secret (>= 16 bytes) or whose peer ids are listed may exchange data
    with this one. encrypt: CURVE on every connection (turn off only on a trusted
    network; every peer must agree).

step() averages once; get_tensors() reads or writes the tensors. Raises
InvalidArgumentError for bad options. Thread-safe; one background thread (which
never calls Python), joined by shutdown().)doc")
      .def(py::init(&MakeAverager), py::arg("dht"), py::arg("tensors"), py::kw_only(),
           py::arg("prefix"), py::arg("target_group_size") = 16,
           py::arg("min_group_size") = 2, py::arg("matchmaking_time") = 5.0,
           py::arg("compression") = py::none(), py::arg("error_feedback") = false,
           py::arg("delta_mode") = false, py::arg("group_bits_length") = 0,
           py::arg("initial_group_bits") = "", py::arg("listen") = "127.0.0.1:0",
           py::arg("client_mode") = false, py::arg("auxiliary") = false,
           py::arg("bandwidth") = 0.0, py::arg("part_size") = 0,
           py::arg("max_parts_in_flight") = 4, py::arg("sender_timeout") = 10.0,
           py::arg("allreduce_timeout") = 60.0, py::arg("swarm_secret") = "",
           py::arg("authorized_peers") = std::vector<std::string>{},
           py::arg("encrypt") = true)
      .def(
          "step",
          [](std::shared_ptr<AveragerHolder> self, float weight, const py::object& round,
             const py::bytes& gather, std::optional<double> timeout, bool allow_retries,
             bool wait) -> py::object {
            StepOptions o;
            o.weight = weight;
            if (!round.is_none()) o.round = py::str(round).cast<std::string>();
            o.gather = gather;
            if (timeout) o.timeout = Seconds(*timeout, "timeout");
            o.allow_retries = allow_retries;
            StepHandle handle = self->live().Step(o);
            if (!wait) return py::cast(PyStepHandle{handle, self});
            return py::cast(WaitForStep(handle, -1.0));
          },
          py::kw_only(), py::arg("weight") = 1.0f, py::arg("round") = py::none(),
          py::arg("gather") = py::bytes(), py::arg("timeout") = py::none(),
          py::arg("allow_retries") = true, py::arg("wait") = true,
          R"doc(Averages the tensors with a group of peers.

weight: this peer's weight in the average (>= 0). round: names the round (peers
meet only within one; None: this averager's step count, for peers in lockstep).
gather: bytes (<= 4 KiB) given to every member (AveragingResult.gathered).
timeout: seconds for the whole step (None: matchmaking_time + allreduce_timeout).
wait: True blocks (GIL released; Ctrl-C cancels) and returns an AveragingResult;
False returns a StepControl at once. Raises DeadlineExceededError (no group),
InvalidArgumentError, CancelledError, UnavailableError.)doc")
      .def(
          "get_tensors",
          [](std::shared_ptr<AveragerHolder> self) {
            auto lock = std::make_unique<PyTensorLock>();
            lock->holder = std::move(self);
            return lock;
          },
          "A context manager: `with averager.get_tensors() as tensors:` locks the "
          "tensors and gives views of them.")
      .def_property_readonly("group_bits",
                             [](AveragerHolder& h) { return h.live().group_bits(); })
      .def_property_readonly(
          "peer_id", [](AveragerHolder& h) { return h.averager->endpoint()->id(); },
          "the id of the averager's endpoint")
      .def_property_readonly(
          "address", [](AveragerHolder& h) { return h.averager->endpoint()->address(); },
          "the averager's TCP address (empty in client mode)")
      .def_property_readonly("shapes",
                             [](const AveragerHolder& h) {
                               py::list out;
                               for (const auto& s : h.shapes)
                                 out.append(py::tuple(py::cast(s)));
                               return out;
                             })
      .def("shutdown", &AveragerHolder::Shutdown,
           "Cancels queued steps, ends the running one and joins the thread. "
           "Idempotent.")
      .def("__enter__", [](std::shared_ptr<AveragerHolder> h) { return h; })
      .def("__exit__", [](AveragerHolder& h, const py::args&) {
        h.Shutdown();
        return false;
      });

  BindStateSharing(m);
}

}  // namespace python
}  // namespace hivemind
