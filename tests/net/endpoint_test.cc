// Endpoint over real ZeroMQ sockets on 127.0.0.1.
#include "hivemind/net/endpoint.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <future>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "hivemind/wire/frame.h"
#include "net/peer_address.h"
#include "tests/net/raw_peer.h"
#include "zmq.hpp"

namespace hivemind {
namespace {

using wire::MessageType;

std::unique_ptr<Endpoint> MakeEndpoint(EndpointOptions options = {}) {
  auto endpoint = Endpoint::Create(std::move(options));
  EXPECT_TRUE(endpoint.ok()) << endpoint.status();
  return std::move(endpoint).value();
}

// Replies to pings with "pong:" + body.
void ServePing(Endpoint& endpoint) {
  endpoint.SetHandler(MessageType::kPing, [](Message request, Responder responder) {
    responder.Reply(MessageType::kPong,
                    MakeSharedBytes("pong:" + std::string(request.body)));
  });
}

TEST(Endpoint, BindsAFreePortAndAnswersRequests) {
  auto server = MakeEndpoint();
  auto client = MakeEndpoint();
  auto bound = internal::ParsePeerAddress(server->address());
  ASSERT_TRUE(bound.ok()) << bound.status();
  // The real port, not the requested 0 (the peer id after it may hold ":0").
  EXPECT_TRUE(absl::StartsWith(bound->transport, "tcp://127.0.0.1:")) << bound->transport;
  EXPECT_FALSE(absl::EndsWith(bound->transport, ":0")) << bound->transport;
  EXPECT_EQ(bound->peer_id, server->id());
  EXPECT_EQ(server->id().size(), 40u);
  ServePing(*server);
  auto reply = client->Call(server->address(), MessageType::kPing,
                            MakeSharedBytes("hello"), absl::Seconds(10));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->header.type, MessageType::kPong);
  EXPECT_EQ(reply->body, "pong:hello");
  EXPECT_GT(client->stats().bytes_sent, 5u);
}

TEST(Endpoint, EveryEndpointAnswersPingsAndOtherTypesAreUnimplemented) {
  auto server = MakeEndpoint();
  auto client = MakeEndpoint();
  auto pong = client->Call(server->address(), MessageType::kPing, MakeSharedBytes(""),
                           absl::Seconds(10));
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(pong->header.type, MessageType::kPong);
  EXPECT_TRUE(pong->body.empty());
  auto other = client->Call(server->address(), MessageType::kJoinRequest,
                            MakeSharedBytes(""), absl::Seconds(10));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kUnimplemented);
  // A dead peer does not answer the ping: the deadline says so.
  const std::string address = server->address();
  server->Shutdown();
  auto dead = client->Call(address, MessageType::kPing, MakeSharedBytes(""),
                           absl::Milliseconds(300));
  EXPECT_EQ(dead.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(Endpoint, ManyConcurrentRequestsFromSeveralThreads) {
  auto server = MakeEndpoint();
  auto client = MakeEndpoint();
  ServePing(*server);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const std::string body = std::to_string(t) + "/" + std::to_string(i);
        auto reply = client->Call(server->address(), MessageType::kPing,
                                  MakeSharedBytes(body), absl::Seconds(10));
        if (reply.ok() && reply->body == "pong:" + body) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 200);
}

TEST(Endpoint, LargeBodiesArriveIntact) {
  auto server = MakeEndpoint();
  auto client = MakeEndpoint();
  std::string big(32 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + 7);
  server->SetHandler(MessageType::kStateRequest, [](Message request, Responder r) {
    r.Reply(MessageType::kStateChunk, MakeSharedBytes(std::string(request.body)));
  });
  auto reply = client->Call(server->address(), MessageType::kStateRequest,
                            MakeSharedBytes(big), absl::Seconds(30));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(reply->body == big);
}

TEST(Endpoint, DeadPeerGivesDeadlineExceeded) {
  auto client = MakeEndpoint();
  std::string address;
  {
    auto gone = MakeEndpoint();
    address = gone->address();
  }
  const absl::Time start = absl::Now();
  auto reply = client->Call(address, MessageType::kPing, MakeSharedBytes("x"),
                            absl::Milliseconds(300));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(Endpoint, SlowHandlerMissesTheDeadline) {
  std::vector<Responder> parked;  // never answered in time; outlives the server
  auto server = MakeEndpoint();
  auto client = MakeEndpoint();
  server->SetHandler(MessageType::kPing,
                     [&](Message, Responder r) { parked.push_back(std::move(r)); });
  auto reply = client->Call(server->address(), MessageType::kPing, MakeSharedBytes(""),
                            absl::Milliseconds(200));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(Endpoint, ErrorRepliesCarryThePeerStatus) {
  auto server = MakeEndpoint();
  auto client = MakeEndpoint();
  server->SetHandler(MessageType::kPing, [](Message, Responder r) {
    r.ReplyError(absl::FailedPreconditionError("not now"));
  });
  auto reply = client->Call(server->address(), MessageType::kPing, MakeSharedBytes(""),
                            absl::Seconds(10));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(reply.status().message(), "not now");
  // No handler for this type: kUnimplemented.
  reply = client->Call(server->address(), MessageType::kJoinRequest, MakeSharedBytes(""),
                       absl::Seconds(10));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnimplemented);
}

TEST(Endpoint, ShutdownCancelsPendingRequests) {
  std::vector<Responder> parked;  // outlives the server, whose thread fills it
  auto server = MakeEndpoint();
  server->SetHandler(MessageType::kPing,
                     [&](Message, Responder r) { parked.push_back(std::move(r)); });
  auto client = MakeEndpoint();
  std::promise<absl::Status> outcome;
  std::future<absl::Status> done = outcome.get_future();
  client->Request(server->address(), MessageType::kPing, MakeSharedBytes(""),
                  absl::Now() + absl::Seconds(60),
                  [&](absl::StatusOr<Message> r) { outcome.set_value(r.status()); });
  absl::SleepFor(absl::Milliseconds(100));
  client->Shutdown();
  ASSERT_EQ(done.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(done.get().code(), absl::StatusCode::kCancelled);
  client->Shutdown();  // idempotent
  // Requests after shutdown fail at once.
  auto late = client->Call(server->address(), MessageType::kPing, MakeSharedBytes(""),
                           absl::Seconds(1));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kCancelled);
}

TEST(Endpoint, ClientModeListensNowhereButCanCall) {
  auto server = MakeEndpoint();
  ServePing(*server);
  EndpointOptions options;
  options.client_mode = true;
  auto client = MakeEndpoint(options);
  EXPECT_TRUE(client->address().empty());
  auto reply = client->Call(server->address(), MessageType::kPing, MakeSharedBytes("c"),
                            absl::Seconds(10));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->body, "pong:c");
}

TEST(Endpoint, IdleConnectionsBeyondTheCapAreClosed) {
  std::vector<std::unique_ptr<Endpoint>> servers;
  for (int i = 0; i < 4; ++i) {
    servers.push_back(MakeEndpoint());
    ServePing(*servers.back());
  }
  EndpointOptions options;
  options.max_connections = 2;
  auto client = MakeEndpoint(options);
  for (int pass = 0; pass < 2; ++pass) {  // the second pass reconnects evicted peers
    for (auto& server : servers) {
      auto reply = client->Call(server->address(), MessageType::kPing,
                                MakeSharedBytes("x"), absl::Seconds(10));
      ASSERT_TRUE(reply.ok()) << reply.status();
      EXPECT_LE(client->stats().open_connections, 2u);
    }
  }
}

TEST(Endpoint, BadListenAddressIsAnError) {
  EndpointOptions options;
  options.listen_address = "nonsense://x";
  EXPECT_EQ(Endpoint::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Endpoint, AnAddressInUseIsUnavailable) {
  auto first = MakeEndpoint();
  EndpointOptions options;
  options.listen_address = internal::ParsePeerAddress(first->address()).value().transport;
  auto second = Endpoint::Create(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
}

// Requesters on several threads while another shuts the endpoint down: every
// request completes exactly once (a request queued after the I/O thread's last drain
// used to be lost, and Call waited for it forever).
TEST(Endpoint, RequestsRacingAShutdownAreAllCompleted) {
  auto server = MakeEndpoint();
  ServePing(*server);
  for (int attempt = 0; attempt < 20; ++attempt) {
    auto client = MakeEndpoint();
    std::atomic<int> issued{0};
    std::atomic<int> completed{0};
    std::atomic<int> twice{0};
    std::atomic<bool> go{true};
    std::vector<std::thread> requesters;
    for (int t = 0; t < 4; ++t) {
      requesters.emplace_back([&] {
        while (go) {
          auto once = std::make_shared<std::atomic<bool>>(false);
          ++issued;
          client->Request(server->address(), MessageType::kPing, MakeSharedBytes("r"),
                          absl::Now() + absl::Seconds(30),
                          [&, once](absl::StatusOr<Message>) {
                            if (once->exchange(true)) ++twice;
                            ++completed;
                          });
        }
      });
    }
    absl::SleepFor(absl::Milliseconds(5 + attempt));
    client->Shutdown();
    absl::SleepFor(absl::Milliseconds(2));  // requests made after the shutdown too
    go = false;
    for (std::thread& t : requesters) t.join();
    // Queued requests complete within Shutdown, later ones inside Request.
    EXPECT_EQ(completed.load(), issued.load()) << "attempt " << attempt;
    EXPECT_EQ(twice.load(), 0);
  }
}

// Several threads shut one endpoint down at once, while others request: each
// Shutdown returns only once the endpoint has stopped, and nothing crashes (a second
// Shutdown used to close the wake-up descriptor under the running I/O thread).
TEST(Endpoint, ConcurrentShutdownsAllReturnStopped) {
  auto server = MakeEndpoint();
  ServePing(*server);
  for (int attempt = 0; attempt < 10; ++attempt) {
    auto client = MakeEndpoint();
    std::atomic<bool> go{true};
    std::thread requester([&] {
      while (go) {
        (void)client->Call(server->address(), MessageType::kPing, MakeSharedBytes("x"),
                           absl::Seconds(10));
      }
    });
    absl::SleepFor(absl::Milliseconds(10));
    std::vector<std::thread> stoppers;
    std::atomic<int> stopped{0};
    for (int t = 0; t < 4; ++t) {
      stoppers.emplace_back([&] {
        client->Shutdown();
        // Stopped: a request now completes inside Request with kCancelled.
        bool inline_done = false;
        client->Request(server->address(), MessageType::kPing, MakeSharedBytes(""),
                        absl::Now() + absl::Seconds(10), [&](absl::StatusOr<Message> r) {
                          inline_done = absl::IsCancelled(r.status());
                        });
        if (inline_done) ++stopped;
      });
    }
    for (std::thread& t : stoppers) t.join();
    go = false;
    requester.join();
    EXPECT_EQ(stopped.load(), 4);
  }
}

// The SO_SNDBUF of this process's TCP sockets connected to 127.0.0.1:`port`.
std::vector<int> SendBuffersOfConnectionsTo(int port) {
  std::vector<int> sizes;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return sizes;
  while (dirent* entry = readdir(dir)) {
    const int fd = std::atoi(entry->d_name);
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    if (fd <= 2 || getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0 ||
        peer.sin_family != AF_INET || ntohs(peer.sin_port) != port) {
      continue;
    }
    int size = 0;
    socklen_t size_len = sizeof(size);
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &size_len) == 0) {
      sizes.push_back(size);
    }
  }
  closedir(dir);
  return sizes;
}

int PortOf(const std::string& address) {
  const std::string transport = internal::ParsePeerAddress(address).value().transport;
  return std::atoi(transport.c_str() + transport.rfind(':') + 1);  // tcp://HOST:PORT
}

TEST(Endpoint, SendBufferBytesSetsTheKernelBufferOfOutgoingConnections) {
  EndpointOptions bad;
  bad.send_buffer_bytes = -1;
  EXPECT_EQ(Endpoint::Create(bad).status().code(), absl::StatusCode::kInvalidArgument);

  auto server = MakeEndpoint();
  ServePing(*server);
  EndpointOptions options;
  options.send_buffer_bytes = 32 << 10;
  auto client = MakeEndpoint(options);
  std::string big(2 << 20, 'x');  // many times the buffer: it still flows
  auto reply = client->Call(server->address(), MessageType::kPing, MakeSharedBytes(big),
                            absl::Seconds(30));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->body.size(), big.size() + 5);
  // Linux reports twice the size asked for (it counts its bookkeeping too).
  const std::vector<int> sizes = SendBuffersOfConnectionsTo(PortOf(server->address()));
  ASSERT_EQ(sizes.size(), 1u);
  EXPECT_EQ(sizes[0], 2 * (32 << 10));
}

// Sends raw multipart messages to `address` from a DEALER socket that completed
// the CURVE handshake (an authenticated peer sending garbage).
void SendRaw(zmq::context_t& context, const std::string& address,
             const std::vector<std::string>& frames) {
  zmq::socket_t raw(context, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 1000);
  testing_util::ConnectRaw(raw, address);
  for (size_t i = 0; i < frames.size(); ++i) {
    raw.send(zmq::buffer(frames[i]),
             i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
  raw.close();
}

TEST(Endpoint, GarbageIsRejectedAndHonestPeersAreStillServed) {
  auto server = MakeEndpoint();
  ServePing(*server);
  zmq::context_t context;
  const std::string valid =
      wire::EncodeFrame(MessageType::kPing, 1, "payload", /*checksum=*/true);
  std::string corrupt_header = valid.substr(0, wire::kFrameHeaderSize);
  corrupt_header[0] = 'X';
  std::string bad_checksum = valid.substr(0, wire::kFrameHeaderSize);
  SendRaw(context, server->address(), {"complete garbage"});
  SendRaw(context, server->address(), {corrupt_header, "payload"});
  SendRaw(context, server->address(), {bad_checksum, "paYload"});
  SendRaw(context, server->address(), {valid.substr(0, 20), "payload"});  // truncated
  SendRaw(context, server->address(), {valid.substr(0, 32), "pay"});      // short body
  auto client = MakeEndpoint();
  // The honest client is served while (and after) garbage arrives.
  for (int i = 0; i < 20; ++i) {
    auto reply = client->Call(server->address(), MessageType::kPing,
                              MakeSharedBytes("ok"), absl::Seconds(10));
    ASSERT_TRUE(reply.ok()) << reply.status();
  }
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (server->stats().bad_frames < 5 && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server->stats().bad_frames, 5u);
  EXPECT_EQ(server->stats().banned_connections, 5u);
}

TEST(Endpoint, AConnectionIsIgnoredAfterItsFirstGarbageFrame) {
  std::atomic<int> served{0};
  auto server = MakeEndpoint();
  server->SetHandler(MessageType::kPing, [&](Message, Responder r) {
    ++served;
    r.Reply(MessageType::kPong, MakeSharedBytes(""));
  });
  zmq::context_t context;
  const std::string valid = wire::EncodeFrame(MessageType::kPing, 1, "", false);
  // Garbage first, then a valid request on the same connection: ignored.
  zmq::socket_t raw(context, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  testing_util::ConnectRaw(raw, server->address());
  raw.send(zmq::str_buffer("junk"), zmq::send_flags::none);
  raw.send(zmq::buffer(valid.substr(0, 32)), zmq::send_flags::sndmore);
  raw.send(zmq::message_t(), zmq::send_flags::none);
  raw.set(zmq::sockopt::rcvtimeo, 500);
  zmq::message_t reply;
  EXPECT_FALSE(raw.recv(reply));
  EXPECT_EQ(served.load(), 0);
  // The garbage did arrive (the raw peer passed the CURVE handshake) and banned the
  // connection; the valid request after it was ignored, not merely lost.
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (server->stats().banned_connections < 1 && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server->stats().bad_frames, 1u);
  EXPECT_EQ(server->stats().banned_connections, 1u);
}

}  // namespace
}  // namespace hivemind
