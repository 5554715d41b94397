// A Dht on OpenDHT (Debian's libopendht): a node of a Kademlia DHT over UDP.
#ifndef HIVEMIND_DHT_OPENDHT_NODE_H_
#define HIVEMIND_DHT_OPENDHT_NODE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hivemind/dht/dht.h"
#include "hivemind/export.h"

namespace hivemind {

struct HIVEMIND_EXPORT DhtOptions {
  // Scopes every key (see dht.h). Required.
  std::string run_id;

  // UDP address to listen on, "HOST:PORT"; port 0 picks a free one (read it back
  // with OpenDhtNode::address()). Default: 127.0.0.1:0.
  std::string listen_address = "127.0.0.1:0";

  // Nodes to join, "HOST:PORT" each; empty starts a new DHT (a bootstrap node).
  std::vector<std::string> initial_peers;

  // How long Create waits for the first initial peer to answer. Default: 10 s.
  absl::Duration bootstrap_timeout = absl::Seconds(10);

  // This node's key pair: its id is identity.public_key, and it signs the records
  // this node stores (unless Store is given another signer). Generated when both
  // halves are empty; a public key may be left empty and is then derived. Default:
  // empty.
  KeyPair identity;

  // Print a line on stderr for every record a read drops (malformed, unsigned or
  // badly signed); OpenDhtNode::rejected_records() counts them either way. Under
  // attack this can be many lines. Default: false.
  bool log_rejected_records = false;
};

// Thread safety: thread-safe (see Dht). Destroying the node shuts it down and joins
// its threads.
class HIVEMIND_EXPORT OpenDhtNode : public Dht {
 public:
  // Starts a node. Returns kInvalidArgument for an empty run id, a malformed
  // address or a malformed identity, kUnavailable if the address cannot be bound or no
  // initial peer answered within bootstrap_timeout.
  static absl::StatusOr<std::unique_ptr<OpenDhtNode>> Create(DhtOptions options);

  ~OpenDhtNode() override;

  // "HOST:PORT" others pass as their initial peer.
  std::string address() const;

  // Number of other DHT nodes this node knows (good ones, IPv4).
  int known_nodes() const;

  // Values this node's reads (Get, Listen) dropped because they were malformed,
  // unsigned, or not signed by their writer for the key they were found under.
  uint64_t rejected_records() const;

  const PeerId& id() const override;
  absl::Status Store(absl::string_view key, absl::string_view subkey,
                     absl::string_view value, absl::Time expiration,
                     absl::Duration timeout = absl::Seconds(10),
                     const KeyPair* signer = nullptr) override;
  absl::Status Replace(absl::string_view key, absl::string_view subkey,
                       absl::string_view value, absl::Time expiration,
                       absl::Duration timeout = absl::Seconds(10),
                       const KeyPair* signer = nullptr) override;
  absl::StatusOr<std::vector<DhtRecord>> Get(
      absl::string_view key, absl::Duration timeout = absl::Seconds(10)) override;
  absl::StatusOr<uint64_t> Listen(absl::string_view key,
                                  ListenCallback callback) override;
  void CancelListen(uint64_t token) override;

  // Leaves the DHT and joins the node's threads. Idempotent.
  void Shutdown();

 private:
  class Impl;
  explicit OpenDhtNode(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hivemind

#endif  // HIVEMIND_DHT_OPENDHT_NODE_H_
