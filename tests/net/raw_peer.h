// A raw ZeroMQ DEALER that speaks CURVE to an endpoint with a fresh key (an
// authenticated peer that may then send anything): for tests that inject garbage.
#ifndef HIVEMIND_TESTS_NET_RAW_PEER_H_
#define HIVEMIND_TESTS_NET_RAW_PEER_H_

#include <string>

#include "gtest/gtest.h"
#include "hivemind/net/identity.h"
#include "net/curve.h"
#include "net/peer_address.h"
#include "zmq.hpp"

namespace hivemind {
namespace testing_util {

// Connects `socket` (a DEALER) to the endpoint at `address` over CURVE, as a peer
// with a fresh identity (and `proof`, if the swarm needs one).
inline void ConnectRaw(zmq::socket_t& socket, const std::string& address,
                       const std::string& proof = "") {
  auto peer = internal::ParsePeerAddress(address);
  ASSERT_TRUE(peer.ok()) << peer.status();
  auto identity = GenerateKeyPair();
  ASSERT_TRUE(identity.ok()) << identity.status();
  auto keys = CurveKeysOf(*identity);
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_TRUE(internal::ConfigureCurveClient(socket, *keys, *peer, proof).ok());
  socket.connect(peer->transport);
}

}  // namespace testing_util
}  // namespace hivemind

#endif  // HIVEMIND_TESTS_NET_RAW_PEER_H_
