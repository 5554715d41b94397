// CURVE on the endpoint's sockets: a ROUTER is a CURVE server, every DEALER a CURVE
// client that knows its server's key from the address (net/peer_address.h). In a
// private swarm a ZAP handler (ZeroMQ's authentication protocol, RFC 27) tags every
// connection with the client's public key, so each request can be checked against
// the swarm's policy (net/access_policy.h); a client presents its membership proof
// as connection metadata.
#ifndef HIVEMIND_NET_CURVE_H_
#define HIVEMIND_NET_CURVE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "hivemind/net/identity.h"
#include "net/peer_address.h"
#include "zmq.hpp"

namespace hivemind {
namespace internal {

// Where ZeroMQ looks for the ZAP handler of a context.
inline constexpr char kZapEndpoint[] = "inproc://zeromq.zap.01";
// The connection metadata that carries a client's membership proof.
inline constexpr char kProofProperty[] = "X-Hivemind-Proof";

// Makes `socket` a CURVE server with `keys`; with `authenticate`, its connections
// go through the context's ZAP handler.
void ConfigureCurveServer(zmq::socket_t& socket, const CurveKeys& keys,
                          bool authenticate);

// Makes `socket` a CURVE client with `keys` of the server named by `server`, and
// presents `proof` (if not empty). kInvalidArgument for a malformed peer id,
// kFailedPrecondition if this libzmq cannot send connection metadata.
absl::Status ConfigureCurveClient(zmq::socket_t& socket, const CurveKeys& keys,
                                  const PeerAddress& server, const std::string& proof);

// Answers one ZAP request waiting on `zap` (a REP socket bound to kZapEndpoint):
// CURVE connections are accepted and tagged with the client's key (Z85) as their
// User-Id; anything else is refused. Never blocks.
void AnswerZapRequest(zmq::socket_t& zap);

// The client key (User-Id) and proof of the connection a received message came on;
// empty when absent.
std::string ConnectionProperty(const zmq::message_t& message, const char* name);

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_NET_CURVE_H_
