// A peer's network endpoint on ZeroMQ: it listens for requests on one ROUTER socket,
// keeps one outgoing DEALER connection per remote address, and sends requests with
// deadlines. One I/O thread owns every socket; other threads hand it work through a
// queue and a wake-up (see docs/thread_model.md).
//
// Every message is one wire frame (hivemind/wire/frame.h) sent as two ZeroMQ frames,
// header then body, so a body can go out without a copy and be shared by several
// sends (an all-reduce result goes to every member from one buffer).
#ifndef HIVEMIND_NET_ENDPOINT_H_
#define HIVEMIND_NET_ENDPOINT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "hivemind/export.h"
#include "hivemind/net/identity.h"
#include "hivemind/util/shared_bytes.h"
#include "hivemind/wire/frame.h"

namespace hivemind {

// A received message. The body points into buffers owned by `storage`, so it stays
// valid as long as the Message (or a copy of it) lives, on any thread.
struct HIVEMIND_EXPORT Message {
  wire::FrameHeader header;
  absl::string_view body;
  std::shared_ptr<const void> storage;
};

struct HIVEMIND_EXPORT EndpointOptions {
  // Where to listen, as a ZeroMQ TCP endpoint; port 0 picks a free port (read the
  // result with Endpoint::address()). Ignored in client mode. Default: 127.0.0.1:0.
  std::string listen_address = "tcp://127.0.0.1:0";

  // Client mode (behind NAT): listen nowhere, only open outgoing connections.
  // Such a peer can send requests but receives none. Default: false.
  bool client_mode = false;

  // This peer's key pair; generated when empty. Every connection is encrypted and
  // authenticated with CURVE keys derived from it (net/identity.h). Default: empty.
  KeyPair identity;

  // Encrypt and authenticate every connection with CURVE. Turn off only where the
  // network is trusted (one cluster's LAN, loopback benchmarks): CURVE costs CPU, a
  // single stream on loopback drops from about 900 to about 160 MB/s here. Every
  // member of a swarm must agree (an encrypting and a plain peer cannot connect), and
  // private swarms (below) need it. Default: true.
  bool encrypt = true;

  // A private swarm. With `authorized_peers`, this endpoint answers requests only
  // from these peers and sends only to them. With `swarm_secret` (at least 16 bytes,
  // the same on every member), only from and to peers that prove they know it: the
  // proof travels in their addresses and connection metadata, bound to their keys
  // (docs/security.md). With both, a peer must pass both. A refused request gets a
  // kPermissionDenied reply with the reason, is logged and counted
  // (Stats::refused_requests); a send to a non-member fails with kPermissionDenied.
  // Both empty (the default): an open swarm, still encrypted.
  std::vector<PeerId> authorized_peers;
  std::string swarm_secret;

  // Largest body accepted; a peer sending a larger message is disconnected by
  // ZeroMQ before the message is buffered. Default: 64 MiB.
  uint32_t max_body_size = 64u << 20;

  // Checksum (XXH3-64) every body this endpoint sends (receivers always verify a
  // checksum that is present). TCP's checksum and ZeroMQ's framing already guard
  // the transport; this adds end-to-end protection at the cost of a pass over every
  // body on both sides. Default: false.
  bool checksum_bodies = false;

  // Outgoing connections kept open; beyond this the least recently used idle one is
  // closed (a swarm peer meets many peers over time; each connection costs file
  // descriptors). Default: 64.
  int max_connections = 64;

  // The kernel's send buffer (SO_SNDBUF) of each outgoing connection, in bytes; 0
  // leaves it to the kernel's autotuning (the default). An all-reduce sends its parts
  // on outgoing connections and answers with results on incoming ones: on a link
  // with little delay, a small buffer (32 KiB) keeps the backlog of parts in this
  // process instead of the link's queue, so the results other peers wait for go out
  // first (docs/benchmarks.md: +1-3 points of the link bound, fewer slow rounds). It also
  // caps each connection at about size / round-trip time, so on a link with real
  // delay leave it 0.
  int send_buffer_bytes = 0;

  // Frames a connection may send that fail to parse before every further message
  // from it is ignored. Default: 1 (the first garbage frame bans the connection).
  int max_bad_frames = 1;
};

namespace internal {
class EndpointCore;
}  // namespace internal

// Answers one request. Cheap to copy; may be used from any thread, at most once
// (later calls are ignored), and outlive the request handler. If the endpoint has
// shut down, replying does nothing.
class HIVEMIND_EXPORT Responder {
 public:
  Responder() = default;

  // Sends `body` as a message of `type` in reply.
  void Reply(wire::MessageType type, SharedBytes body) const;

  // Sends `status` (not OK) as a kError reply; the requester's callback receives it.
  void ReplyError(const absl::Status& status) const;

  // The request id of the request being answered.
  uint64_t request_id() const { return request_id_; }

 private:
  friend class internal::EndpointCore;
  std::weak_ptr<internal::EndpointCore> core_;
  std::string routing_id_;
  uint64_t request_id_ = 0;
  std::shared_ptr<std::atomic<bool>> used_;
};

// Thread safety: every public method may be called from any thread, except that
// handlers and callbacks run on the I/O thread and must not block (hand heavy work
// to another thread). Destroying the endpoint shuts it down.
class HIVEMIND_EXPORT Endpoint {
 public:
  // Called on the I/O thread for each valid request of a registered type.
  using RequestHandler = std::function<void(Message request, Responder responder)>;
  // Called exactly once per request: with the reply, with the peer's error (a kError
  // reply), kDeadlineExceeded when the deadline passes first, kDataLoss for a
  // malformed reply, or kCancelled at shutdown. It runs on the I/O thread, except
  // for kCancelled: a request still queued when the endpoint shuts down completes on
  // the thread that calls Shutdown, and a request made after the shutdown completes
  // inside Request, on the caller's thread, before Request returns (so a caller must
  // not hold a lock there that `done` takes).
  using ReplyCallback = std::function<void(absl::StatusOr<Message> reply)>;

  // Binds (unless in client mode) and starts the I/O thread. Returns
  // kInvalidArgument for a bad listen address or identity, kUnavailable if the
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Endpoint>> Create(EndpointOptions options);

  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  // The bound address with the real port and this peer's id, and its membership
  // proof in a swarm with a secret ("tcp://127.0.0.1:40123;id=PEER_ID[;proof=HEX]"):
  // what others pass to Request. Empty in client mode.
  const std::string& address() const;

  // This peer's id (its public key).
  const PeerId& id() const;

  // This peer's key pair (the generated one if the options had none): what the
  // averager and the state server sign their DHT records with. Lives as long as the
  // endpoint.
  const KeyPair& identity() const;

  // Routes requests of `type` to `handler` (replacing any previous one; an empty
  // handler removes it). Requests of a type without a handler get a kUnimplemented
  // error reply, except kPing: without a handler of its own, every endpoint answers
  // it with an empty kPong (the liveness check of matchmaking).
  void SetHandler(wire::MessageType type, RequestHandler handler);

  // Sends a request to the peer listening at `address` (another endpoint's
  // address()) and calls `done` once (see ReplyCallback); kInvalidArgument for an
  // address without a peer id, kPermissionDenied for a peer this swarm does not
  // admit. Never blocks on the network.
  void Request(const std::string& address, wire::MessageType type, SharedBytes body,
               absl::Time deadline, ReplyCallback done);

  // Blocking convenience: Request and wait for its outcome (at most `timeout`, plus
  // the time a shutdown takes).
  absl::StatusOr<Message> Call(const std::string& address, wire::MessageType type,
                               SharedBytes body, absl::Duration timeout);

  // Counters since creation.
  struct Stats {
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
    uint64_t bad_frames = 0;  // frames that failed to parse
    uint64_t banned_connections = 0;
    uint64_t refused_requests = 0;  // from peers this swarm does not admit
    uint64_t open_connections = 0;  // outgoing, now
  };
  Stats stats() const;

  // Stops the I/O thread and closes every socket; pending and queued requests
  // complete with kCancelled before it returns. Idempotent, and safe to call from
  // several threads at once (each returns once the endpoint has stopped); called by
  // the destructor. Must not be called from a handler or callback (the I/O thread).
  void Shutdown();

 private:
  explicit Endpoint(std::shared_ptr<internal::EndpointCore> core);
  std::shared_ptr<internal::EndpointCore> core_;
};

// ZeroMQ allocates every message it receives with malloc, and glibc gives large
// blocks back to the kernel when they are freed, so each all-reduce round faults in
// and zeroes fresh pages for everything it receives (a quarter of a 100 MB loopback
// round's CPU time here, docs/benchmarks.md). This tells glibc's malloc to serve blocks
// of up to kMaxRetainedBlock bytes from its heaps and to keep freed memory for reuse: the
// process's resident memory then stays near its peak instead of shrinking.
//
// It changes the allocator of the whole process (mallopt), so it is the
// application's choice: call it once at start-up, before other threads run; the
// library itself never does. Returns kUnimplemented where malloc is not glibc's (or
// a sanitizer replaced it), kInternal if glibc refused a setting.
inline constexpr int kMaxRetainedBlock = 32 << 20;  // glibc's upper limit
HIVEMIND_EXPORT absl::Status RetainFreedMemory();

}  // namespace hivemind

#endif  // HIVEMIND_NET_ENDPOINT_H_
