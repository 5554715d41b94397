// Bindings of the DHT node (hivemind/dht/opendht_node.h) and of the codecs
// (hivemind/codec/{codec,factory,error_feedback}.h).
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common.h"
#include "hivemind/codec/codec.h"
#include "hivemind/codec/error_feedback.h"
#include "hivemind/codec/factory.h"

namespace hivemind {
namespace python {
namespace {

std::vector<std::string> PeerList(const py::object& peers) {
  std::vector<std::string> out;
  if (peers.is_none()) return out;
  if (py::isinstance<py::str>(peers)) {
    for (absl::string_view peer :
         absl::StrSplit(peers.cast<std::string>(), ',', absl::SkipEmpty())) {
      out.emplace_back(peer);
    }
    return out;
  }
  for (const py::handle peer : peers) out.push_back(py::str(peer).cast<std::string>());
  return out;
}

std::shared_ptr<DhtHolder> MakeDht(const py::object& initial_peers, std::string run_id,
                                   std::string listen, double bootstrap_timeout,
                                   bool start) {
  if (!start) {
    RaiseStatus(absl::InvalidArgumentError(
        "start=False is not supported: the node starts in the constructor"));
  }
  DhtOptions options;
  options.run_id = std::move(run_id);
  options.listen_address = std::move(listen);
  options.initial_peers = PeerList(initial_peers);
  options.bootstrap_timeout = Seconds(bootstrap_timeout, "bootstrap_timeout");
  absl::StatusOr<std::unique_ptr<OpenDhtNode>> node;
  {
    py::gil_scoped_release release;
    node = OpenDhtNode::Create(std::move(options));
  }
  return std::make_shared<DhtHolder>(ValueOrRaise(std::move(node)));
}

OpenDhtNode* LiveNode(DhtHolder& dht) {
  if (dht.shut_down()) RaiseStatus(absl::CancelledError("the DHT has shut down"));
  return dht.node();
}

// A float32 CPU tensor's contiguous data (a copy only when it is not contiguous).
torch::Tensor FloatInput(const torch::Tensor& tensor, const char* what) {
  if (!tensor.defined() || tensor.scalar_type() != torch::kFloat ||
      !tensor.device().is_cpu()) {
    RaiseStatus(
        absl::InvalidArgumentError(absl::StrCat(what, " must be a float32 CPU tensor")));
  }
  return tensor.contiguous();
}

absl::Span<const float> FloatsOf(const torch::Tensor& contiguous) {
  return absl::MakeConstSpan(contiguous.data_ptr<float>(),
                             static_cast<size_t>(contiguous.numel()));
}

// Encodes with `encode(span, std::string*)` straight into a bytes object.
template <typename EncodeFn>
py::bytes EncodeToBytes(const torch::Tensor& values, EncodeFn&& encode) {
  const torch::Tensor input = FloatInput(values, "the tensor");
  std::string payload;
  absl::Status status;
  {
    py::gil_scoped_release release;
    status = encode(FloatsOf(input), &payload);
  }
  ThrowIfError(status);
  return py::bytes(payload);
}

absl::string_view BufferView(const py::buffer& data, py::buffer_info* info) {
  *info = data.request();
  return absl::string_view(static_cast<const char*>(info->ptr),
                           static_cast<size_t>(info->size * info->itemsize));
}

torch::Tensor DecodePayload(const py::buffer& data, const py::object& shape) {
  py::buffer_info info;
  const absl::string_view payload = BufferView(data, &info);
  const PayloadInfo header = ValueOrRaise(ReadPayloadInfo(payload));
  torch::Tensor out = torch::empty({static_cast<int64_t>(header.count)}, torch::kFloat);
  absl::Status status;
  {
    py::gil_scoped_release release;
    status = Decode(payload, absl::MakeSpan(out.data_ptr<float>(), header.count));
  }
  ThrowIfError(status);
  if (!shape.is_none()) {
    const std::vector<int64_t> dims = shape.cast<std::vector<int64_t>>();
    int64_t numel = 1;
    for (int64_t d : dims) numel *= d;
    if (numel != out.numel()) {
      RaiseStatus(absl::InvalidArgumentError(
          absl::StrCat("the payload holds ", out.numel(), " values, the shape ", numel)));
    }
    out = out.view(dims);
  }
  return out;
}

py::dict PayloadInfoDict(const py::buffer& data) {
  py::buffer_info info;
  const PayloadInfo header = ValueOrRaise(ReadPayloadInfo(BufferView(data, &info)));
  py::dict out;
  out["codec"] = std::string(CodecName(header.codec));
  out["zstd"] = header.zstd;
  out["block_size"] = header.block_size;
  out["count"] = header.count;
  return out;
}

struct PyErrorFeedback {
  std::shared_ptr<Codec> codec;
  ErrorFeedback feedback;
  explicit PyErrorFeedback(std::shared_ptr<Codec> c)
      : codec(std::move(c)), feedback(codec.get()) {}
};

}  // namespace

void BindDht(py::module_& m) {
  py::class_<DhtRecord>(m, "DhtRecord", "One record of the DHT (DHT.get).")
      .def_readonly("subkey", &DhtRecord::subkey)
      .def_property_readonly("value",
                             [](const DhtRecord& r) { return py::bytes(r.value); })
      .def_readonly("writer", &DhtRecord::writer, "the storing node's peer id")
      .def_property_readonly(
          "stored_at", [](const DhtRecord& r) { return UnixSeconds(r.stored_at); },
          "unix time, by the writer's clock")
      .def_property_readonly(
          "expiration", [](const DhtRecord& r) { return UnixSeconds(r.expiration); },
          "unix time after which the record is ignored")
      .def("__repr__", [](const DhtRecord& r) {
        return absl::StrCat("DhtRecord(subkey='", r.subkey, "', ", r.value.size(),
                            " bytes, writer='", r.writer.substr(0, 8), "...')");
      });

  py::class_<DhtHolder, std::shared_ptr<DhtHolder>>(m, "DHT", R"doc(
A node of the DHT (OpenDHT, over UDP) that peers use to find each other.

DHT(initial_peers=None, *, run_id="hivemind", listen="127.0.0.1:0",
    bootstrap_timeout=10.0, start=True)

initial_peers: "HOST:PORT" addresses of nodes to join (a list, or one string with
    commas); none starts a new DHT (a bootstrap node).
run_id: scopes every key; peers of one swarm use the same run_id.
listen: UDP address "HOST:PORT"; port 0 picks a free one.
bootstrap_timeout: seconds to wait for the first initial peer to answer.

Raises InvalidArgumentError (empty run_id, malformed address) or UnavailableError
(address not bindable, no initial peer answered). The node runs its own threads;
shutdown() (or leaving a `with` block) leaves the DHT and joins them.
Thread-safe.)doc")
      .def(py::init(&MakeDht), py::arg("initial_peers") = py::none(), py::kw_only(),
           py::arg("run_id") = "hivemind", py::arg("listen") = "127.0.0.1:0",
           py::arg("bootstrap_timeout") = 10.0, py::arg("start") = true)
      .def_property_readonly(
          "address", [](DhtHolder& d) { return d.node()->address(); },
          "\"HOST:PORT\" other peers pass in initial_peers")
      .def_property_readonly(
          "peer_id", [](DhtHolder& d) { return d.node()->id(); },
          "this node's id (a Z85 Curve25519 public key)")
      .def_property_readonly(
          "known_nodes",
          [](DhtHolder& d) { return d.shut_down() ? 0 : d.node()->known_nodes(); },
          "number of other DHT nodes this node knows")
      .def_property_readonly("is_alive", [](DhtHolder& d) { return !d.shut_down(); })
      .def(
          "get_visible_maddrs",
          [](DhtHolder& d) { return std::vector<std::string>{d.node()->address()}; },
          "[address]: what other peers pass as initial_peers (hivemind's name)")
      .def(
          "store",
          [](DhtHolder& d, const std::string& key, const py::bytes& value,
             double expiration, const std::string& subkey, double timeout) {
            OpenDhtNode* node = LiveNode(d);
            const std::string bytes = value;
            const absl::Duration ttl = Seconds(expiration, "expiration");
            const absl::Duration wait = Seconds(timeout, "timeout");
            absl::Status status;
            {
              py::gil_scoped_release release;
              status = node->Store(key, subkey, bytes, absl::Now() + ttl, wait);
            }
            ThrowIfError(status);
          },
          py::arg("key"), py::arg("value"), py::kw_only(), py::arg("expiration") = 60.0,
          py::arg("subkey") = "", py::arg("timeout") = 10.0,
          "Stores value (bytes, at most 32 KiB) under (key, subkey) for `expiration` "
          "seconds; waits until a node confirms. Raises DeadlineExceededError, "
          "InvalidArgumentError, CancelledError after shutdown.")
      .def(
          "get",
          [](DhtHolder& d, const std::string& key, double timeout) {
            OpenDhtNode* node = LiveNode(d);
            const absl::Duration wait = Seconds(timeout, "timeout");
            absl::StatusOr<std::vector<DhtRecord>> records;
            {
              py::gil_scoped_release release;
              records = node->Get(key, wait);
            }
            return ValueOrRaise(std::move(records));
          },
          py::arg("key"), py::kw_only(), py::arg("timeout") = 10.0,
          "The unexpired records under key (newest per writer and subkey), as a list "
          "of DhtRecord.")
      .def("shutdown", &DhtHolder::Shutdown,
           "Leaves the DHT and joins the node's threads. Idempotent.")
      .def("__enter__", [](std::shared_ptr<DhtHolder> d) { return d; })
      .def("__exit__",
           [](DhtHolder& d, const py::args&) {
             d.Shutdown();
             return false;
           })
      .def("__repr__", [](DhtHolder& d) {
        return absl::StrCat("DHT(address='", d.node()->address(), "', peer_id='",
                            d.node()->id().substr(0, 8), "...'",
                            d.shut_down() ? ", shut down" : "", ")");
      });
}

void BindCodec(py::module_& m) {
  py::class_<Codec, std::shared_ptr<Codec>>(m, "Codec", R"doc(
A tensor codec: encode(tensor) -> bytes, decode(bytes) -> tensor.

Codec(spec="none"), spec = NAME[:KEY=VALUE,...][+zstd[=LEVEL]] with NAME one of
none, fp16, bf16, scaled_fp16, uniform8, quantile8, blockwise8, blockwise4,
blockwise2 and KEY `block` (block size) or `stochastic` (0/1); for example
"blockwise4", "blockwise8:block=2048,stochastic=1", "fp16+zstd=3".
Raises InvalidArgumentError naming the bad part. Payloads describe themselves:
any payload decodes, whichever codec made it. Encoders refuse NaN/Inf
(InvalidArgumentError); decoders refuse corrupt payloads (DataLossError).
Immutable and thread-safe; encode and decode release the GIL.)doc")
      .def(py::init([](const std::string& spec) {
             return std::shared_ptr<Codec>(ValueOrRaise(CreateCodecFromSpec(spec)));
           }),
           py::arg("spec") = "none")
      .def_property_readonly(
          "spec", [](const Codec& c) { return CodecSpec(c.options()); },
          "the canonical spec of this codec")
      .def_property_readonly(
          "name", [](const Codec& c) { return std::string(CodecName(c.options().id)); })
      .def(
          "encode",
          [](const Codec& c, const torch::Tensor& tensor, uint64_t seed) {
            EncodeOptions options;
            options.seed = seed;
            return EncodeToBytes(tensor,
                                 [&](absl::Span<const float> v, std::string* out) {
                                   return c.Encode(v, out, options);
                                 });
          },
          py::arg("tensor"), py::arg("seed") = 0,
          "Encodes a float32 CPU tensor (any shape, flattened) into a payload. `seed` "
          "seeds stochastic rounding.")
      .def_static("decode", &DecodePayload, py::arg("payload"),
                  py::arg("shape") = py::none(),
                  "Decodes any payload into a new float32 tensor (1-D, or `shape`).")
      .def("max_encoded_size", &Codec::MaxEncodedSize, py::arg("count"),
           "An upper bound on the payload size for `count` values.")
      .def("__repr__", [](const Codec& c) {
        return absl::StrCat("Codec('", CodecSpec(c.options()), "')");
      });
  m.def("decode", &DecodePayload, py::arg("payload"), py::arg("shape") = py::none(),
        "Decodes any codec payload into a new float32 tensor (1-D, or `shape`).");
  m.def("payload_info", &PayloadInfoDict, py::arg("payload"),
        "What a payload's header says: {'codec', 'zstd', 'block_size', 'count'}.");

  py::class_<PyErrorFeedback>(m, "ErrorFeedback", R"doc(
Error feedback for one buffer: encode() adds what the codec lost last time to the
input, so that over many rounds nothing is lost on average.

ErrorFeedback(codec). Not thread-safe.)doc")
      .def(py::init<std::shared_ptr<Codec>>(), py::arg("codec"))
      .def(
          "encode",
          [](PyErrorFeedback& ef, const torch::Tensor& tensor, uint64_t seed) {
            EncodeOptions options;
            options.seed = seed;
            return EncodeToBytes(tensor,
                                 [&](absl::Span<const float> v, std::string* out) {
                                   return ef.feedback.Encode(v, out, options);
                                 });
          },
          py::arg("tensor"), py::arg("seed") = 0,
          "Encodes tensor + residual; the residual becomes what the codec lost. "
          "InvalidArgumentError if the size differs from the first call's.")
      .def_property_readonly(
          "residual",
          [](const PyErrorFeedback& ef) {
            const absl::Span<const float> r = ef.feedback.residual();
            torch::Tensor out =
                torch::empty({static_cast<int64_t>(r.size())}, torch::kFloat);
            if (!r.empty()) std::memcpy(out.data_ptr<float>(), r.data(), r.size() * 4);
            return out;
          },
          "a copy of the current residual (1-D)")
      .def(
          "reset", [](PyErrorFeedback& ef) { ef.feedback.Reset(); },
          "Forgets the residual.");
}

}  // namespace python
}  // namespace hivemind
