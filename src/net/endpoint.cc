#include "hivemind/net/endpoint.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <random>

#include "absl/strings/str_cat.h"
#include "hivemind/util/logging.h"
#include "hivemind/wire/error_body.h"
#include "net/curve.h"
#include "net/endpoint_core.h"
#include "net/peer_address.h"

namespace hivemind {
namespace internal {
namespace {

constexpr absl::Duration kMaxPollWait = absl::Milliseconds(100);
// How long Call waits past its timeout for the I/O thread to report the outcome.
constexpr absl::Duration kCallMargin = absl::Seconds(30);
// Messages read from one socket per loop turn, so one busy peer cannot starve the
// others or the command queue.
constexpr int kMaxReadsPerTurn = 64;
// Admission decisions remembered (one per connection); beyond, they are recomputed.
constexpr size_t kMaxRememberedConnections = 4096;

// Receives one whole multipart message without blocking; false if none is queued.
bool ReceiveMultipart(zmq::socket_t& socket, std::vector<zmq::message_t>* parts) {
  parts->clear();
  zmq::message_t first;
  if (!socket.recv(first, zmq::recv_flags::dontwait)) return false;
  bool more = first.more();
  parts->push_back(std::move(first));
  while (more) {  // the rest of a multipart message is already here
    zmq::message_t next;
    (void)socket.recv(next, zmq::recv_flags::none);
    more = next.more();
    parts->push_back(std::move(next));
  }
  return true;
}

absl::string_view View(const zmq::message_t& m) {
  return absl::string_view(static_cast<const char*>(m.data()), m.size());
}

// A zero-copy ZeroMQ message over shared bytes; the bytes live until ZeroMQ is done.
zmq::message_t ZeroCopy(const SharedBytes& body) {
  if (body == nullptr || body->empty()) return zmq::message_t();
  auto* keep = new SharedBytes(body);
  return zmq::message_t(
      const_cast<char*>((*keep)->data()), (*keep)->size(),
      [](void*, void* hint) { delete static_cast<SharedBytes*>(hint); }, keep);
}

}  // namespace

EndpointCore::EndpointCore(EndpointOptions options) : options_(std::move(options)) {
  std::random_device rd;
  next_request_id_ = (uint64_t{rd()} << 32) | rd();
}

EndpointCore::~EndpointCore() {
  Stop();
  // Closed only here: Wake() may run on any thread until the last reference goes.
  if (wake_fd_ >= 0) close(wake_fd_);
}

void EndpointCore::ConfigureSocket(zmq::socket_t& socket) {
  socket.set(zmq::sockopt::linger, 0);
  // Flow control is the protocols' job (bounded windows of parts in flight); a
  // high-water mark would make ROUTER silently drop replies instead.
  socket.set(zmq::sockopt::sndhwm, 0);
  socket.set(zmq::sockopt::rcvhwm, 0);
  socket.set(zmq::sockopt::maxmsgsize,
             static_cast<int64_t>(options_.max_body_size) + 64 * 1024);
}

absl::Status EndpointCore::Start() {
  if (options_.send_buffer_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "send_buffer_bytes is ", options_.send_buffer_bytes, "; 0 means the kernel's"));
  }
  if (options_.identity.public_key.empty()) {
    auto keys = GenerateKeyPair();
    if (!keys.ok()) return keys.status();
    options_.identity = *keys;
  }
  auto curve = CurveKeysOf(options_.identity);
  if (!curve.ok()) return curve.status();
  curve_ = *std::move(curve);
  auto policy = AccessPolicy::Create(options_);
  if (!policy.ok()) return policy.status();
  policy_ = *std::move(policy);
  proof_ = policy_->ProofFor(curve_.public_key);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return absl::InternalError("eventfd failed");
  if (!options_.client_mode) {
    try {
      if (!policy_->open()) {
        // Bound before the router: ZeroMQ asks it about every connection.
        zap_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::rep);
        zap_->set(zmq::sockopt::linger, 0);
        zap_->bind(kZapEndpoint);
      }
      router_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::router);
      ConfigureSocket(*router_);
      if (options_.encrypt) {
        ConfigureCurveServer(*router_, curve_, /*authenticate=*/zap_ != nullptr);
      }
      router_->bind(options_.listen_address);
      address_ = FormatPeerAddress({router_->get(zmq::sockopt::last_endpoint),
                                    options_.identity.public_key, proof_});
    } catch (const zmq::error_t& e) {
      router_.reset();
      zap_.reset();
      const absl::StatusCode code = e.num() == EADDRINUSE || e.num() == EADDRNOTAVAIL
                                        ? absl::StatusCode::kUnavailable
                                        : absl::StatusCode::kInvalidArgument;
      return absl::Status(code, absl::StrCat("cannot listen on '",
                                             options_.listen_address, "': ", e.what()));
    }
  }
  {
    MutexLock lock(&stop_mu_);
    started_ = true;
  }
  // The router was created on this thread; from here on only the I/O thread uses it
  // (the thread start is a happens-before edge).
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void EndpointCore::Stop() {
  MutexLock stop_lock(&stop_mu_);
  if (started_) {
    started_ = false;
    stopping_ = true;
    Wake();
    thread_.join();
  }
  // Requests queued after the loop's last drain (or, for an endpoint that never
  // started, at all) fail here, on this thread; later ones fail in Request.
  std::vector<OutgoingRequest> late;
  {
    MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
    late.swap(requests_);
    replies_.clear();
  }
  for (OutgoingRequest& r : late) r.done(absl::CancelledError("endpoint shut down"));
}

void EndpointCore::Wake() {
  const uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!write(wake_fd_, &one, sizeof(one));
}

void EndpointCore::SetHandler(wire::MessageType type, Endpoint::RequestHandler handler) {
  MutexLock lock(&handlers_mu_);
  if (handler) {
    handlers_[type] = std::make_shared<Endpoint::RequestHandler>(std::move(handler));
  } else {
    handlers_.erase(type);
  }
}

void EndpointCore::Request(const std::string& address, wire::MessageType type,
                           SharedBytes body, absl::Time deadline,
                           Endpoint::ReplyCallback done) {
  {
    MutexLock lock(&mu_);
    if (!closed_) {
      requests_.push_back({address, type, std::move(body), deadline, std::move(done)});
      done = nullptr;
    }
  }
  if (done) {  // shut down: outside the lock, since `done` may call back in
    done(absl::CancelledError("endpoint shut down"));
    return;
  }
  Wake();
}

void EndpointCore::Reply(const std::string& routing_id, uint64_t request_id,
                         wire::MessageType type, SharedBytes body) {
  {
    MutexLock lock(&mu_);
    if (closed_) return;
    replies_.push_back({routing_id, request_id, type, std::move(body)});
  }
  Wake();
}

Endpoint::Stats EndpointCore::stats() const {
  Endpoint::Stats s;
  s.bytes_sent = bytes_sent_;
  s.bytes_received = bytes_received_;
  s.bad_frames = bad_frames_;
  s.banned_connections = banned_connections_;
  s.refused_requests = refused_requests_;
  s.open_connections = open_connections_;
  return s;
}

void EndpointCore::Run() {
  std::vector<zmq::pollitem_t> items;
  std::vector<std::string> dealer_order;  // addresses: a dealer may close mid-turn
  std::vector<zmq::message_t> parts;
  while (!stopping_) {
    items.clear();
    dealer_order.clear();
    items.push_back({nullptr, wake_fd_, ZMQ_POLLIN, 0});
    if (router_) items.push_back({router_->handle(), 0, ZMQ_POLLIN, 0});
    if (zap_) items.push_back({zap_->handle(), 0, ZMQ_POLLIN, 0});
    for (auto& [address, dealer] : dealers_) {
      items.push_back({dealer.socket->handle(), 0, ZMQ_POLLIN, 0});
      dealer_order.push_back(address);
    }
    absl::Duration wait = kMaxPollWait;
    if (!deadlines_.empty()) {
      wait = std::max(absl::ZeroDuration(),
                      std::min(wait, deadlines_.begin()->first - absl::Now()));
    }
    zmq::poll(items, std::chrono::milliseconds(absl::ToInt64Milliseconds(wait) + 1));
    if (items[0].revents & ZMQ_POLLIN) {
      uint64_t counter;
      (void)!read(wake_fd_, &counter, sizeof(counter));
    }
    DrainCommands();
    if (router_ && (items[1].revents & ZMQ_POLLIN)) ReadRouter();
    if (zap_ && (items[2].revents & ZMQ_POLLIN)) {
      for (int i = 0;
           i < kMaxReadsPerTurn && (zap_->get(zmq::sockopt::events) & ZMQ_POLLIN); ++i) {
        AnswerZapRequest(*zap_);
      }
    }
    const size_t first_dealer = 1 + (router_ ? 1 : 0) + (zap_ ? 1 : 0);
    for (size_t i = 0; i < dealer_order.size(); ++i) {
      if (!(items[first_dealer + i].revents & ZMQ_POLLIN)) continue;
      auto dealer = dealers_.find(dealer_order[i]);
      if (dealer != dealers_.end()) ReadDealer(*dealer->second.socket);
    }
    ExpireDeadlines();
  }
  FailAllPending(absl::CancelledError("endpoint shut down"));
  router_.reset();
  zap_.reset();
  dealers_.clear();
  context_.shutdown();
  context_.close();
}

void EndpointCore::DrainCommands() {
  std::vector<OutgoingRequest> requests;
  std::vector<OutgoingReply> replies;
  {
    MutexLock lock(&mu_);
    requests.swap(requests_);
    replies.swap(replies_);
  }
  for (const OutgoingReply& reply : replies) SendReply(reply);
  for (OutgoingRequest& request : requests) StartRequest(std::move(request));
}

zmq::socket_t* EndpointCore::DealerFor(const std::string& address, absl::Status* error) {
  auto it = dealers_.find(address);
  if (it != dealers_.end()) {
    it->second.last_used = absl::Now();
    return it->second.socket.get();
  }
  auto peer = ParsePeerAddress(address);
  if (!peer.ok()) {
    *error = peer.status();
    return nullptr;
  }
  if (absl::Status admitted = policy_->AdmitServer(*peer); !admitted.ok()) {
    *error = admitted;
    return nullptr;
  }
  EvictIdleDealers();
  std::unique_ptr<zmq::socket_t> dealer;
  try {
    dealer = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
    ConfigureSocket(*dealer);
    if (options_.send_buffer_bytes > 0) {
      dealer->set(zmq::sockopt::sndbuf, options_.send_buffer_bytes);
    }
  } catch (const zmq::error_t& e) {  // out of file descriptors or sockets
    *error = absl::ResourceExhaustedError(
        absl::StrCat("cannot open a socket to '", address, "': ", e.what()));
    return nullptr;
  }
  try {
    if (options_.encrypt) {
      if (absl::Status curve = ConfigureCurveClient(*dealer, curve_, *peer, proof_);
          !curve.ok()) {
        *error = curve;
        return nullptr;
      }
    }
    dealer->connect(peer->transport);
  } catch (const zmq::error_t& e) {
    *error = absl::InvalidArgumentError(
        absl::StrCat("cannot connect to '", address, "': ", e.what()));
    return nullptr;
  }
  Dealer& entry = dealers_[address];
  entry.socket = std::move(dealer);
  entry.last_used = absl::Now();
  open_connections_ = dealers_.size();
  return entry.socket.get();
}

void EndpointCore::EvictIdleDealers() {
  while (static_cast<int>(dealers_.size()) >= options_.max_connections) {
    auto victim = dealers_.end();
    for (auto it = dealers_.begin(); it != dealers_.end(); ++it) {
      if (it->second.pending == 0 &&
          (victim == dealers_.end() || it->second.last_used < victim->second.last_used)) {
        victim = it;
      }
    }
    if (victim == dealers_.end()) return;  // all busy: go over the cap for now
    dealers_.erase(victim);
    open_connections_ = dealers_.size();
  }
}

void EndpointCore::StartRequest(OutgoingRequest request) {
  absl::Status error;
  zmq::socket_t* dealer = DealerFor(request.address, &error);
  if (dealer == nullptr) {
    request.done(error);
    return;
  }
  const uint64_t id = next_request_id_++;
  ++dealers_[request.address].pending;
  pending_[id] = Pending{request.deadline, std::move(request.done), request.address};
  deadlines_.emplace(request.deadline, id);
  SendFrame(*dealer, nullptr, request.type, id, request.body);
}

void EndpointCore::SendReply(const OutgoingReply& reply) {
  if (router_)
    SendFrame(*router_, &reply.routing_id, reply.type, reply.request_id, reply.body);
}

void EndpointCore::SendFrame(zmq::socket_t& socket, const std::string* routing_id,
                             wire::MessageType type, uint64_t request_id,
                             const SharedBytes& body) {
  const absl::string_view bytes = body ? absl::string_view(*body) : absl::string_view();
  zmq::message_t header(wire::kFrameHeaderSize);
  wire::EncodeFrameHeader(type, request_id, bytes, options_.checksum_bodies,
                          static_cast<char*>(header.data()));
  try {
    if (routing_id != nullptr) {
      socket.send(zmq::buffer(*routing_id), zmq::send_flags::sndmore);
    }
    socket.send(header, zmq::send_flags::sndmore);
    socket.send(ZeroCopy(body), zmq::send_flags::none);
    bytes_sent_ += wire::kFrameHeaderSize + bytes.size();
  } catch (const zmq::error_t&) {
    // ROUTER to a peer that has gone: nothing to deliver; the requester times out.
  }
}

void EndpointCore::ReadRouter() {
  std::vector<zmq::message_t> parts;
  for (int i = 0; i < kMaxReadsPerTurn && ReceiveMultipart(*router_, &parts); ++i) {
    std::string routing_id(View(parts[0]));
    parts.erase(parts.begin());
    HandleRequest(routing_id, std::move(parts));
  }
}

void EndpointCore::ReadDealer(zmq::socket_t& dealer) {
  std::vector<zmq::message_t> parts;
  for (int i = 0; i < kMaxReadsPerTurn && ReceiveMultipart(dealer, &parts); ++i) {
    HandleReply(std::move(parts));
  }
}

void EndpointCore::HandleRequest(const std::string& routing_id,
                                 std::vector<zmq::message_t> parts) {
  if (banned_.contains(routing_id)) return;
  absl::StatusOr<wire::FrameView> frame =
      parts.size() == 2 ? wire::ParseFrame(View(parts[0]), View(parts[1]),
                                           wire::FrameLimits{options_.max_body_size})
                        : absl::DataLossError(absl::StrCat("request of ", parts.size(),
                                                           " ZeroMQ frames, expected 2"));
  for (const auto& p : parts) bytes_received_ += p.size();
  if (!frame.ok()) {
    ++bad_frames_;
    if (++bad_frames_by_peer_[routing_id] >= options_.max_bad_frames) {
      banned_.insert(routing_id);
      ++banned_connections_;
    }
    return;
  }
  if (absl::Status admitted = Admission(routing_id, parts[0]); !admitted.ok()) {
    ++refused_requests_;
    SendFrame(*router_, &routing_id, wire::MessageType::kError, frame->header.request_id,
              MakeSharedBytes(wire::EncodeErrorBody(admitted)));
    return;
  }
  Responder responder;
  responder.core_ = weak_from_this();
  responder.routing_id_ = routing_id;
  responder.request_id_ = frame->header.request_id;
  responder.used_ = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<Endpoint::RequestHandler> handler;
  {
    MutexLock lock(&handlers_mu_);
    auto it = handlers_.find(frame->header.type);
    if (it != handlers_.end()) handler = it->second;
  }
  if (handler == nullptr && frame->header.type == wire::MessageType::kPing) {
    responder.Reply(wire::MessageType::kPong, nullptr);  // liveness, built in
    return;
  }
  if (handler == nullptr) {
    responder.ReplyError(absl::UnimplementedError(absl::StrCat(
        "no handler for ", wire::MessageTypeName(frame->header.type), " messages")));
    return;
  }
  auto storage = std::make_shared<zmq::message_t>(std::move(parts[1]));
  Message message{frame->header, View(*storage), storage};
  (*handler)(std::move(message), std::move(responder));
}

absl::Status EndpointCore::Admission(const std::string& routing_id,
                                     const zmq::message_t& first) {
  if (policy_->open()) return absl::OkStatus();
  auto known = admission_.find(routing_id);
  if (known != admission_.end()) return known->second;
  const std::string key = ConnectionProperty(first, "User-Id");
  absl::Status admitted =
      policy_->AdmitClient(key, ConnectionProperty(first, kProofProperty));
  if (!admitted.ok()) {
    // Once per connection: a refused peer that keeps sending does not flood the log.
    HIVEMIND_LOG(kWarning, "endpoint ", address_, " refused a connection from ",
                 ConnectionProperty(first, "Peer-Address"), ": ", admitted.message());
  }
  if (admission_.size() >= kMaxRememberedConnections) admission_.clear();
  admission_.emplace(routing_id, admitted);
  return admitted;
}

void EndpointCore::HandleReply(std::vector<zmq::message_t> parts) {
  for (const auto& p : parts) bytes_received_ += p.size();
  if (parts.size() != 2) {
    ++bad_frames_;
    return;
  }
  absl::StatusOr<wire::FrameHeader> header =
      wire::ParseFrameHeader(View(parts[0]), wire::FrameLimits{options_.max_body_size});
  if (!header.ok()) {
    ++bad_frames_;  // no trustworthy request id: the request will time out
    return;
  }
  absl::StatusOr<wire::FrameView> frame = wire::ParseFrame(
      View(parts[0]), View(parts[1]), wire::FrameLimits{options_.max_body_size});
  if (!frame.ok()) {
    ++bad_frames_;
    Complete(header->request_id, frame.status());
    return;
  }
  if (frame->header.type == wire::MessageType::kError) {
    absl::StatusOr<absl::Status> peer = wire::ParseErrorBody(frame->body);
    Complete(header->request_id, peer.ok() ? *peer : peer.status());
    return;
  }
  auto storage = std::make_shared<zmq::message_t>(std::move(parts[1]));
  Complete(header->request_id, Message{frame->header, View(*storage), storage});
}

void EndpointCore::Complete(uint64_t request_id, absl::StatusOr<Message> outcome) {
  auto it = pending_.find(request_id);
  if (it == pending_.end()) return;  // late reply after the deadline
  Pending pending = std::move(it->second);
  pending_.erase(it);
  auto dealer = dealers_.find(pending.address);
  if (dealer != dealers_.end()) --dealer->second.pending;
  deadlines_.erase({pending.deadline, request_id});
  pending.done(std::move(outcome));
}

void EndpointCore::ExpireDeadlines() {
  const absl::Time now = absl::Now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    const uint64_t id = deadlines_.begin()->second;
    Complete(id, absl::DeadlineExceededError("no reply before the deadline"));
  }
}

void EndpointCore::FailAllPending(const absl::Status& status) {
  while (!deadlines_.empty()) Complete(deadlines_.begin()->second, status);
}

}  // namespace internal

void Responder::Reply(wire::MessageType type, SharedBytes body) const {
  if (used_ == nullptr || used_->exchange(true)) return;
  if (auto core = core_.lock())
    core->Reply(routing_id_, request_id_, type, std::move(body));
}

void Responder::ReplyError(const absl::Status& status) const {
  Reply(wire::MessageType::kError, MakeSharedBytes(wire::EncodeErrorBody(status)));
}

absl::StatusOr<std::unique_ptr<Endpoint>> Endpoint::Create(EndpointOptions options) {
  auto core = std::make_shared<internal::EndpointCore>(std::move(options));
  absl::Status started = core->Start();
  if (!started.ok()) return started;
  return std::unique_ptr<Endpoint>(new Endpoint(std::move(core)));
}

Endpoint::Endpoint(std::shared_ptr<internal::EndpointCore> core)
    : core_(std::move(core)) {}

Endpoint::~Endpoint() { Shutdown(); }

const std::string& Endpoint::address() const { return core_->address(); }

const PeerId& Endpoint::id() const { return core_->id(); }

const KeyPair& Endpoint::identity() const { return core_->identity(); }

void Endpoint::SetHandler(wire::MessageType type, RequestHandler handler) {
  core_->SetHandler(type, std::move(handler));
}

void Endpoint::Request(const std::string& address, wire::MessageType type,
                       SharedBytes body, absl::Time deadline, ReplyCallback done) {
  core_->Request(address, type, std::move(body), deadline, std::move(done));
}

absl::StatusOr<Message> Endpoint::Call(const std::string& address, wire::MessageType type,
                                       SharedBytes body, absl::Duration timeout) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<Message>>>();
  std::future<absl::StatusOr<Message>> result = promise->get_future();
  Request(
      address, type, std::move(body), absl::Now() + timeout,
      [promise](absl::StatusOr<Message> reply) { promise->set_value(std::move(reply)); });
  // The I/O thread completes every request by its deadline; the margin covers a
  // shutdown in progress. Past it something is broken: say so rather than hang.
  if (timeout < absl::Hours(24) &&
      result.wait_for(absl::ToChronoNanoseconds(timeout + internal::kCallMargin)) !=
          std::future_status::ready) {
    return absl::InternalError(
        absl::StrCat("request to '", address, "' was not completed by its deadline"));
  }
  return result.get();
}

Endpoint::Stats Endpoint::stats() const { return core_->stats(); }

void Endpoint::Shutdown() { core_->Stop(); }

}  // namespace hivemind
