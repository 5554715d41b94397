// The engine behind Endpoint: the I/O thread, its sockets, and the command queue
// through which other threads reach it.
#ifndef HIVEMIND_NET_ENDPOINT_CORE_H_
#define HIVEMIND_NET_ENDPOINT_CORE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "hivemind/net/endpoint.h"
#include "net/access_policy.h"
#include "util/mutex.h"
#include "zmq.hpp"

namespace hivemind {
namespace internal {

class EndpointCore : public std::enable_shared_from_this<EndpointCore> {
 public:
  explicit EndpointCore(EndpointOptions options);
  ~EndpointCore();

  // Creates the sockets, binds, and starts the I/O thread.
  absl::Status Start();
  // Stops and joins the I/O thread, then fails the requests still queued. Idempotent
  // and safe to call from several threads at once (each returns once stopped).
  void Stop();

  const std::string& address() const { return address_; }
  const PeerId& id() const { return options_.identity.public_key; }
  const KeyPair& identity() const { return options_.identity; }

  // Thread-safe entry points: each queues a command for the I/O thread.
  void SetHandler(wire::MessageType type, Endpoint::RequestHandler handler);
  void Request(const std::string& address, wire::MessageType type, SharedBytes body,
               absl::Time deadline, Endpoint::ReplyCallback done);
  void Reply(const std::string& routing_id, uint64_t request_id, wire::MessageType type,
             SharedBytes body);
  Endpoint::Stats stats() const;

 private:
  struct OutgoingRequest {
    std::string address;
    wire::MessageType type;
    SharedBytes body;
    absl::Time deadline;
    Endpoint::ReplyCallback done;
  };
  struct OutgoingReply {
    std::string routing_id;
    uint64_t request_id;
    wire::MessageType type;
    SharedBytes body;
  };
  struct Pending {
    absl::Time deadline;
    Endpoint::ReplyCallback done;
    std::string address;  // whose dealer carries it
  };
  struct Dealer {
    std::unique_ptr<zmq::socket_t> socket;
    absl::Time last_used;
    int pending = 0;  // requests waiting for a reply on it
  };

  void Run();
  void Wake();
  void DrainCommands();
  void StartRequest(OutgoingRequest request);
  void SendReply(const OutgoingReply& reply);
  void SendFrame(zmq::socket_t& socket, const std::string* routing_id,
                 wire::MessageType type, uint64_t request_id, const SharedBytes& body);
  void ReadRouter();
  void ReadDealer(zmq::socket_t& dealer);
  // Whether the connection `routing_id` may send requests here (checked once per
  // connection, from `first`'s connection properties).
  absl::Status Admission(const std::string& routing_id, const zmq::message_t& first);
  void HandleRequest(const std::string& routing_id, std::vector<zmq::message_t> parts);
  void HandleReply(std::vector<zmq::message_t> parts);
  void ExpireDeadlines();
  void FailAllPending(const absl::Status& status);
  void Complete(uint64_t request_id, absl::StatusOr<Message> outcome);
  zmq::socket_t* DealerFor(const std::string& address, absl::Status* error);
  // Closes the least recently used idle dealer while over the connection cap.
  void EvictIdleDealers();
  void ConfigureSocket(zmq::socket_t& socket);

  EndpointOptions options_;
  CurveKeys curve_;
  std::optional<AccessPolicy> policy_;
  std::string proof_;  // this peer's membership proof; empty without a secret
  std::string address_;
  zmq::context_t context_;
  int wake_fd_ = -1;
  std::thread thread_;
  // Set by Stop to end the I/O loop; read by the loop.
  std::atomic<bool> stopping_{false};
  // Held through the whole of Stop: a second, concurrent Stop waits for the first
  // and then finds the endpoint stopped.
  Mutex stop_mu_;
  bool started_ ABSL_GUARDED_BY(stop_mu_) = false;

  Mutex mu_;
  // Set (under mu_) once the queues have been drained for the last time: from then
  // on Request fails at once and Reply drops, so nothing queued goes unanswered.
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<OutgoingRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::vector<OutgoingReply> replies_ ABSL_GUARDED_BY(mu_);

  mutable Mutex handlers_mu_;
  std::map<wire::MessageType, std::shared_ptr<Endpoint::RequestHandler>> handlers_
      ABSL_GUARDED_BY(handlers_mu_);

  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<uint64_t> bytes_received_{0};
  std::atomic<uint64_t> bad_frames_{0};
  std::atomic<uint64_t> banned_connections_{0};
  std::atomic<uint64_t> refused_requests_{0};
  std::atomic<uint64_t> open_connections_{0};

  // Owned by the I/O thread.
  std::unique_ptr<zmq::socket_t> router_;
  std::unique_ptr<zmq::socket_t> zap_;  // private swarms only
  std::map<std::string, Dealer> dealers_;
  absl::flat_hash_map<uint64_t, Pending> pending_;
  std::set<std::pair<absl::Time, uint64_t>> deadlines_;
  absl::flat_hash_map<std::string, int> bad_frames_by_peer_;
  absl::flat_hash_set<std::string> banned_;
  absl::flat_hash_map<std::string, absl::Status> admission_;  // by routing id
  uint64_t next_request_id_ = 1;
};

}  // namespace internal
}  // namespace hivemind

#endif  // HIVEMIND_NET_ENDPOINT_CORE_H_
