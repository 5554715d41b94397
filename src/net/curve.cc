#include "net/curve.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace hivemind {
namespace internal {
namespace {

constexpr size_t kCurveKeySize = 32;
// ZMQ_METADATA is a draft option of libzmq 4.3 (zmq.h declares it only with
// ZMQ_BUILD_DRAFT_API); Debian's libzmq5 is built with the drafts. The value is
// fixed by zmq.h; a library without it rejects the option at run time, and
// ConfigureCurveClient reports that.
constexpr int kZmqMetadata = 95;
constexpr char kZapVersion[] = "1.0";

std::string Z85(absl::string_view raw) {
  std::string out(raw.size() * 5 / 4 + 1, '\0');
  zmq_z85_encode(out.data(), reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
  out.pop_back();
  return out;
}

}  // namespace

void ConfigureCurveServer(zmq::socket_t& socket, const CurveKeys& keys,
                          bool authenticate) {
  socket.set(zmq::sockopt::curve_server, true);
  socket.set(zmq::sockopt::curve_secretkey, keys.secret_key);
  if (authenticate) socket.set(zmq::sockopt::zap_domain, "hivemind");
}

absl::Status ConfigureCurveClient(zmq::socket_t& socket, const CurveKeys& keys,
                                  const PeerAddress& server, const std::string& proof) {
  auto server_key = CurvePublicKeyOf(server.peer_id);
  if (!server_key.ok()) return server_key.status();
  socket.set(zmq::sockopt::curve_serverkey, *server_key);
  socket.set(zmq::sockopt::curve_publickey, keys.public_key);
  socket.set(zmq::sockopt::curve_secretkey, keys.secret_key);
  if (!proof.empty()) {
    const std::string property = absl::StrCat(kProofProperty, ":", proof);
    if (zmq_setsockopt(socket.handle(), kZmqMetadata, property.data(), property.size()) !=
        0) {
      return absl::FailedPreconditionError(
          absl::StrCat("this libzmq cannot send connection metadata (ZMQ_METADATA, a "
                       "draft option), which swarm secrets need: ",
                       zmq_strerror(zmq_errno())));
    }
  }
  return absl::OkStatus();
}

void AnswerZapRequest(zmq::socket_t& zap) {
  std::vector<zmq::message_t> frames;
  for (;;) {
    zmq::message_t frame;
    if (!zap.recv(frame, zmq::recv_flags::dontwait)) break;
    const bool more = frame.more();
    frames.push_back(std::move(frame));
    if (!more) break;
  }
  if (frames.empty()) return;
  // version, request id, domain, address, identity, mechanism, credentials...
  const std::string request_id = frames.size() > 1 ? frames[1].to_string() : "";
  std::string status = "400";
  std::string text = "only CURVE connections are accepted";
  std::string user_id;
  if (frames.size() == 7 && frames[0].to_string() == kZapVersion &&
      frames[5].to_string() == "CURVE" && frames[6].size() == kCurveKeySize) {
    status = "200";
    text = "OK";
    user_id = Z85(frames[6].to_string());
  }
  try {
    zap.send(zmq::buffer(std::string(kZapVersion)), zmq::send_flags::sndmore);
    zap.send(zmq::buffer(request_id), zmq::send_flags::sndmore);
    zap.send(zmq::buffer(status), zmq::send_flags::sndmore);
    zap.send(zmq::buffer(text), zmq::send_flags::sndmore);
    zap.send(zmq::buffer(user_id), zmq::send_flags::sndmore);
    zap.send(zmq::message_t(), zmq::send_flags::none);
  } catch (const zmq::error_t&) {
    // The context is shutting down.
  }
}

std::string ConnectionProperty(const zmq::message_t& message, const char* name) {
  const char* value = zmq_msg_gets(const_cast<zmq_msg_t*>(message.handle()), name);
  return value == nullptr ? std::string() : std::string(value);
}

}  // namespace internal
}  // namespace hivemind
