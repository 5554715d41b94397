// Writes valid declarations, join requests, join responses (accepted, refused, with a
// leader hint) and peer addresses into a directory: the seed corpus of
// matchmaking_messages_fuzzer. Usage: make_matchmaking_seeds DIR
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "averaging/matchmaking_messages.h"
#include "net/peer_address.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  namespace internal = hivemind::internal;
  const std::string id = "0123456789abcdefghijABCDEFGHIJ.-:+=^!/*?";
  internal::Declaration d{{id, "tcp://10.0.0.1:5555;id=" + id, 12.5,
                           hivemind::MemberMode::kNode, 9, "gathered"},
                          77,
                          absl::FromUnixSeconds(1700000000),
                          "epoch-12"};
  std::vector<std::string> seeds;
  seeds.push_back(internal::EncodeDeclaration(d));
  seeds.push_back(internal::EncodeJoinRequest({"run.grads.group.01", d}));
  internal::JoinResponse yes;
  yes.accepted = true;
  yes.group.group_id = "0123456789abcdef";
  yes.group.members = {d.member, d.member};
  yes.your_index = 1;
  seeds.push_back(internal::EncodeJoinResponse(yes));
  internal::JoinResponse no;
  no.reason = "following another leader";
  seeds.push_back(internal::EncodeJoinResponse(no));
  no.redirect = d;
  seeds.push_back(internal::EncodeJoinResponse(no));
  seeds.push_back(internal::FormatPeerAddress({"tcp://10.0.0.1:5555", id, ""}));
  seeds.push_back(internal::FormatPeerAddress({"tcp://10.0.0.1:5555", id, "00ff"}));
  int index = 0;
  for (const std::string& seed : seeds) {
    std::ofstream(std::string(argv[1]) + "/seed" + std::to_string(index++),
                  std::ios::binary)
        << seed;
  }
  return 0;
}
