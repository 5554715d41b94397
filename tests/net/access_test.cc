// CURVE encryption and private swarms over real sockets on 127.0.0.1.
#include <atomic>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hivemind/net/endpoint.h"
#include "hivemind/wire/error_body.h"
#include "hivemind/wire/frame.h"
#include "net/peer_address.h"
#include "tests/net/raw_peer.h"
#include "zmq.hpp"

namespace hivemind {
namespace {

using wire::MessageType;

constexpr char kSecret[] = "a swarm secret of some length";

std::unique_ptr<Endpoint> MakeEndpoint(EndpointOptions options = {}) {
  auto endpoint = Endpoint::Create(std::move(options));
  EXPECT_TRUE(endpoint.ok()) << endpoint.status();
  return std::move(endpoint).value();
}

KeyPair NewIdentity() { return GenerateKeyPair().value(); }

// Counts pings and answers them.
void ServePing(Endpoint& endpoint, std::atomic<int>* served) {
  endpoint.SetHandler(MessageType::kPing, [served](Message, Responder responder) {
    ++*served;
    responder.Reply(MessageType::kPong, MakeSharedBytes("pong"));
  });
}

absl::StatusOr<Message> Ping(Endpoint& from, const std::string& address) {
  return from.Call(address, MessageType::kPing, MakeSharedBytes("hi"), absl::Seconds(5));
}

TEST(Curve, AddressesNameThePeer) {
  auto endpoint = MakeEndpoint();
  auto parsed = internal::ParsePeerAddress(endpoint->address());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->peer_id, endpoint->id());
  EXPECT_TRUE(parsed->proof.empty());
}

TEST(Curve, APlainTextPeerIsNeverServed) {
  std::atomic<int> served{0};
  auto server = MakeEndpoint();
  ServePing(*server, &served);
  zmq::context_t context;
  zmq::socket_t raw(context, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.set(zmq::sockopt::rcvtimeo, 500);
  raw.connect(internal::ParsePeerAddress(server->address())->transport);
  const std::string valid = wire::EncodeFrame(MessageType::kPing, 1, "hi", false);
  raw.send(zmq::buffer(valid.substr(0, wire::kFrameHeaderSize)),
           zmq::send_flags::sndmore);
  raw.send(zmq::buffer(valid.substr(wire::kFrameHeaderSize)), zmq::send_flags::none);
  zmq::message_t reply;
  EXPECT_FALSE(raw.recv(reply));  // the handshake fails: nothing gets through
  EXPECT_EQ(served.load(), 0);
  EXPECT_EQ(server->stats().bad_frames, 0u);
}

TEST(Curve, NoOneElseCanAnswerForAPeer) {
  // The address names another key than the one listening there: the CURVE handshake
  // fails and nothing is delivered either way.
  std::atomic<int> served{0};
  auto server = MakeEndpoint();
  ServePing(*server, &served);
  auto client = MakeEndpoint();
  internal::PeerAddress impostor = *internal::ParsePeerAddress(server->address());
  impostor.peer_id = NewIdentity().public_key;
  auto reply = client->Call(internal::FormatPeerAddress(impostor), MessageType::kPing,
                            MakeSharedBytes("hi"), absl::Milliseconds(800));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(served.load(), 0);
}

TEST(Curve, AnAddressWithoutAPeerIdIsInvalid) {
  auto client = MakeEndpoint();
  auto reply = Ping(*client, "tcp://127.0.0.1:1");
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Curve, PlainEndpointsTalkToEachOtherButNotToEncryptingOnes) {
  EndpointOptions plain;
  plain.encrypt = false;
  auto server = MakeEndpoint(plain);
  auto client = MakeEndpoint(plain);
  auto encrypting = MakeEndpoint();
  std::atomic<int> served{0};
  ServePing(*server, &served);
  EXPECT_TRUE(Ping(*client, server->address()).ok());
  auto mismatch = encrypting->Call(server->address(), MessageType::kPing,
                                   MakeSharedBytes("hi"), absl::Milliseconds(800));
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(served.load(), 1);
  plain.swarm_secret = kSecret;  // a private swarm needs encryption
  EXPECT_EQ(Endpoint::Create(plain).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PrivateSwarm, AnAllowlistAdmitsMembersAndRefusesOutsiders) {
  const KeyPair a = NewIdentity(), b = NewIdentity();
  EndpointOptions options;
  options.authorized_peers = {a.public_key, b.public_key};
  options.identity = a;
  auto server = MakeEndpoint(options);
  options.identity = b;
  auto member = MakeEndpoint(options);
  auto outsider = MakeEndpoint();
  std::atomic<int> served{0};
  ServePing(*server, &served);
  ServePing(*outsider, &served);

  EXPECT_TRUE(Ping(*member, server->address()).ok());
  for (int i = 0; i < 3; ++i) {
    auto refused = Ping(*outsider, server->address());
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_NE(refused.status().message().find("allowlist"), std::string::npos)
        << refused.status();
  }
  EXPECT_EQ(served.load(), 1);
  EXPECT_EQ(server->stats().refused_requests, 3u);
  // A member does not send to an outsider either (its data would leak).
  auto leak = Ping(*member, outsider->address());
  EXPECT_EQ(leak.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(served.load(), 1);
}

TEST(PrivateSwarm, ASecretAdmitsMembersAndRefusesOutsiders) {
  EndpointOptions options;
  options.swarm_secret = kSecret;
  auto server = MakeEndpoint(options);
  auto member = MakeEndpoint(options);
  EndpointOptions other;
  other.swarm_secret = "another swarm's secret, also long";
  auto stranger = MakeEndpoint(other);
  auto open_peer = MakeEndpoint();
  std::atomic<int> served{0};
  ServePing(*server, &served);
  ServePing(*open_peer, &served);

  EXPECT_NE(server->address().find(";proof="), std::string::npos);
  EXPECT_TRUE(Ping(*member, server->address()).ok());
  for (Endpoint* outsider : {stranger.get(), open_peer.get()}) {
    auto refused = Ping(*outsider, server->address());
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_NE(refused.status().message().find("membership proof"), std::string::npos)
        << refused.status();
  }
  EXPECT_EQ(served.load(), 1);
  // The open peer was refused by the server; the stranger did not even send (the
  // server's address carries no proof valid under the stranger's secret).
  EXPECT_EQ(server->stats().refused_requests, 1u);
  // Members send only to addresses that carry a valid proof.
  EXPECT_EQ(Ping(*member, open_peer->address()).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Ping(*member, stranger->address()).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(served.load(), 1);
}

TEST(PrivateSwarm, AStolenProofIsUselessWithAnotherKey) {
  EndpointOptions options;
  options.swarm_secret = kSecret;
  auto server = MakeEndpoint(options);
  auto member = MakeEndpoint(options);
  std::atomic<int> served{0};
  ServePing(*server, &served);
  // The member's proof is public (in its address); an outsider presents it.
  const std::string stolen = internal::ParsePeerAddress(member->address())->proof;
  ASSERT_FALSE(stolen.empty());
  zmq::context_t context;
  zmq::socket_t raw(context, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.set(zmq::sockopt::rcvtimeo, 5000);
  testing_util::ConnectRaw(raw, server->address(), stolen);
  const std::string ping = wire::EncodeFrame(MessageType::kPing, 7, "hi", false);
  raw.send(zmq::buffer(ping.substr(0, wire::kFrameHeaderSize)), zmq::send_flags::sndmore);
  raw.send(zmq::buffer(ping.substr(wire::kFrameHeaderSize)), zmq::send_flags::none);
  zmq::message_t header, body;
  ASSERT_TRUE(raw.recv(header));
  ASSERT_TRUE(raw.recv(body));
  const std::string header_bytes = header.to_string(), body_bytes = body.to_string();
  auto frame = wire::ParseFrame(header_bytes, body_bytes, {});
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(frame->header.type, MessageType::kError);
  EXPECT_EQ(frame->header.request_id, 7u);
  auto error = wire::ParseErrorBody(frame->body);
  ASSERT_TRUE(error.ok());
  EXPECT_EQ(error->code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(served.load(), 0);
}

TEST(PrivateSwarm, BadOptionsAreInvalidArgument) {
  EndpointOptions short_secret;
  short_secret.swarm_secret = "short";
  EXPECT_EQ(Endpoint::Create(short_secret).status().code(),
            absl::StatusCode::kInvalidArgument);
  EndpointOptions bad_id;
  bad_id.authorized_peers = {"not a peer id"};
  EXPECT_EQ(Endpoint::Create(bad_id).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PeerAddress, RoundTripsAndRejectsMalformedAddresses) {
  const std::string id = NewIdentity().public_key;
  internal::PeerAddress a{"tcp://10.0.0.1:5555", id, "00ff"};
  auto parsed = internal::ParsePeerAddress(internal::FormatPeerAddress(a));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->transport, a.transport);
  EXPECT_EQ(parsed->peer_id, id);
  EXPECT_EQ(parsed->proof, "00ff");
  const std::vector<std::string> malformed = {"tcp://10.0.0.1:5555",
                                              "udp://x;id=" + id,
                                              "tcp://h:1;id=short",
                                              "tcp://h:1;id=" + id + ";id=" + id,
                                              "tcp://h:1;id=" + id + ";proof=XYZ",
                                              "tcp://h:1;id=" + id + ";color=blue",
                                              ""};
  for (const std::string& bad : malformed) {
    EXPECT_EQ(internal::ParsePeerAddress(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

}  // namespace
}  // namespace hivemind
