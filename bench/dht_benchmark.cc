// End-to-end benchmark of the DHT under churn, like hivemind's benchmark_dht.py: in one
// process, start --nodes OpenDhtNode instances on 127.0.0.1, store --records records
// (random keys, each stored by a random node), then silently kill --failure_rate of
// the nodes (Shutdown: no goodbye, the others still list them) and, from random
// surviving nodes, get back every record stored before the kills; then store and get
// --post_kill_records new records among the survivors.
//
//   dht_benchmark [--nodes=64] [--records=256] [--failure_rate=0.1]
//                 [--get_timeout_s=5] [--join=random|bootstrap] [--seed=1]
//
// Joining: node 0 starts the DHT; with --join=bootstrap every other node joins
// through node 0, with --join=random through a random earlier node (so node 0 is no
// hub and killing it matters no more than killing any other node). Create returns
// once one peer answered, and OpenDHT fills the routing table in the background over
// the next seconds; --settle_s waits before the first store.
// Records stored into a swarm only ~1 s old can land where later lookups do not look
// (docs/benchmarks.md); --warmup_lookup has each new node look up one key first.
//
// A get succeeds when a record with the stored value (and the storing node as writer)
// comes back; it is issued from a surviving node other than the writer, so that the
// value cannot come from the writer's own storage. A Get that waits on dead
// nodes returns at its timeout with what arrived: the report says how many returned
// at the timeout. Latency is the time to the call's return. The time at which the
// value itself arrived is not visible through the Dht API (OpenDHT hands values to
// the Get's own callback only, and Listen callbacks are not fed by get replies); a
// run with a short --get_timeout_s shows which fraction arrived within it. A missed
// record is asked for again from every survivor, to tell a lost or misplaced record
// (few find it) from a failed lookup (most do).
//
// Operations of a phase run concurrently on --threads threads (the API is
// thread-safe), so that gets that wait out their timeout do not serialize.
//
// Prints p50/p95/max latencies and success rates per phase; the last line is
// `get_success_after_kills=<fraction>` (pre-kill records whose store was confirmed
// and that a get after the kills found). Exits 1 if the swarm could not be set up.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "hivemind/dht/dht.h"
#include "hivemind/dht/opendht_node.h"

ABSL_FLAG(int, nodes, 64, "DHT nodes to start (at least 2).");
ABSL_FLAG(int, records, 256, "Records to store before the kills.");
ABSL_FLAG(int, post_kill_records, 64, "Records to store and get after the kills.");
ABSL_FLAG(double, failure_rate, 0.1,
          "Fraction of the nodes to kill (rounded; never all: one survives).");
ABSL_FLAG(double, get_timeout_s, 5, "Timeout of each Get, seconds.");
ABSL_FLAG(double, store_timeout_s, 10, "Timeout of each Store, seconds.");
ABSL_FLAG(std::string, join, "random",
          "How nodes join: 'bootstrap' (all through node 0) or 'random' (each through "
          "a random earlier node).");
ABSL_FLAG(double, settle_s, 5,
          "Seconds to wait after the last node joined, before the first store (OpenDHT "
          "fills routing tables in the background; see docs/benchmarks.md).");
ABSL_FLAG(int, threads, 16, "Operations in flight at once in each phase.");
ABSL_FLAG(int, value_size, 100, "Bytes per record value.");
ABSL_FLAG(bool, warmup_lookup, false,
          "After joining, each node looks up one random key before the next joins "
          "(fills its routing table and announces it to the nodes on the way).");
ABSL_FLAG(uint64_t, seed, 1, "Seed for keys, values, writers, readers and victims.");

namespace hivemind {
namespace {

using Rng = std::mt19937_64;

struct Config {
  int nodes = 0;
  int records = 0;
  int post_kill_records = 0;
  double failure_rate = 0;
  absl::Duration get_timeout;
  absl::Duration store_timeout;
  bool join_random = true;
  absl::Duration settle;
  int threads = 0;
  int value_size = 0;
  uint64_t seed = 0;
  bool warmup_lookup = false;
};

absl::StatusOr<Config> ReadFlags() {
  Config c;
  c.nodes = absl::GetFlag(FLAGS_nodes);
  c.records = absl::GetFlag(FLAGS_records);
  c.post_kill_records = absl::GetFlag(FLAGS_post_kill_records);
  c.failure_rate = absl::GetFlag(FLAGS_failure_rate);
  c.get_timeout = absl::Seconds(absl::GetFlag(FLAGS_get_timeout_s));
  c.store_timeout = absl::Seconds(absl::GetFlag(FLAGS_store_timeout_s));
  const std::string join = absl::GetFlag(FLAGS_join);
  c.settle = absl::Seconds(absl::GetFlag(FLAGS_settle_s));
  c.threads = absl::GetFlag(FLAGS_threads);
  c.value_size = absl::GetFlag(FLAGS_value_size);
  c.seed = absl::GetFlag(FLAGS_seed);
  c.warmup_lookup = absl::GetFlag(FLAGS_warmup_lookup);
  if (c.nodes < 2) return absl::InvalidArgumentError("--nodes must be at least 2");
  if (c.records < 1 || c.post_kill_records < 0) {
    return absl::InvalidArgumentError("--records must be >= 1, --post_kill_records >= 0");
  }
  if (!(c.failure_rate >= 0 && c.failure_rate <= 1)) {
    return absl::InvalidArgumentError("--failure_rate must be in [0, 1]");
  }
  if (c.get_timeout <= absl::ZeroDuration() || c.store_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeouts must be positive");
  }
  if (join != "random" && join != "bootstrap") {
    return absl::InvalidArgumentError("--join must be 'random' or 'bootstrap'");
  }
  c.join_random = join == "random";
  if (c.threads < 1) return absl::InvalidArgumentError("--threads must be >= 1");
  if (c.value_size < 1 || static_cast<size_t>(c.value_size) > kMaxDhtValueSize) {
    return absl::InvalidArgumentError("--value_size out of range");
  }
  return c;
}

std::string RandomString(Rng& rng, int size) {
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::uniform_int_distribution<int> pick(0, sizeof(kAlphabet) - 2);
  std::string s(size, ' ');
  for (char& ch : s) ch = kAlphabet[pick(rng)];
  return s;
}

// Runs fn(0..count-1) on up to `threads` threads.
void RunParallel(int count, int threads, const std::function<void(int)>& fn) {
  std::atomic<int> next{0};
  const int n = std::max(1, std::min(threads, count));
  std::vector<std::thread> pool;
  pool.reserve(n);
  for (int t = 0; t < n; ++t) {
    pool.emplace_back([&] {
      for (int i = next++; i < count; i = next++) fn(i);
    });
  }
  for (std::thread& th : pool) th.join();
}

// Outcomes of one phase's operations.
class Phase {
 public:
  explicit Phase(std::string name) : name_(std::move(name)) {}

  void Add(bool ok, absl::Duration latency) {
    ok_.push_back(ok);
    ms_.push_back(absl::ToDoubleMilliseconds(latency));
  }

  int ok_count() const {
    return static_cast<int>(std::count(ok_.begin(), ok_.end(), true));
  }
  int total() const { return static_cast<int>(ok_.size()); }

  // Operations that took at least `d` (gets that waited out their timeout).
  int AtLeast(absl::Duration d) const {
    const double limit = absl::ToDoubleMilliseconds(d);
    return static_cast<int>(
        std::count_if(ms_.begin(), ms_.end(), [&](double m) { return m >= limit; }));
  }

  void Print(absl::Duration wall) const {
    std::vector<double> sorted = ms_;
    std::sort(sorted.begin(), sorted.end());
    auto pct = [&](double p) {
      if (sorted.empty()) return 0.0;
      size_t rank = static_cast<size_t>(std::ceil(p * sorted.size()));
      return sorted[std::min(sorted.size(), std::max<size_t>(rank, 1)) - 1];
    };
    const double rate = total() == 0 ? 0.0 : 100.0 * ok_count() / total();
    std::printf(
        "%-32s ok %4d/%-4d (%6.2f%%)  latency ms p50 %8.1f  p95 %8.1f  max %8.1f  "
        "(phase %.1f s)\n",
        name_.c_str(), ok_count(), total(), rate, pct(0.5), pct(0.95),
        sorted.empty() ? 0.0 : sorted.back(), absl::ToDoubleSeconds(wall));
  }

 private:
  std::string name_;
  std::vector<bool> ok_;
  std::vector<double> ms_;
};

struct Record {
  std::string key;
  std::string value;
  int writer = 0;
  int reader = 0;
  bool stored = false;
  bool found = false;
};

// A node of `pool` other than `avoid` where there is one.
int PickOther(Rng& rng, const std::vector<int>& pool, int avoid) {
  if (pool.size() == 1) return pool[0];
  std::uniform_int_distribution<size_t> pick(0, pool.size() - 1);
  int node;
  do node = pool[pick(rng)];
  while (node == avoid);
  return node;
}

// Records with random keys and values, written by random nodes of `writers`.
std::vector<Record> MakeRecords(Rng& rng, int count, int value_size, const char* tag,
                                const std::vector<int>& writers) {
  std::vector<Record> records(count);
  std::uniform_int_distribution<size_t> pick(0, writers.size() - 1);
  for (Record& r : records) {
    r.key = absl::StrCat("bench/", tag, "/", RandomString(rng, 16));
    r.value = RandomString(rng, value_size);
    r.writer = writers[pick(rng)];
  }
  return records;
}

class Bench {
 public:
  explicit Bench(const Config& config) : c_(config), rng_(c_.seed) {}

  int Run() {
    if (!StartSwarm()) return 1;
    std::vector<int> all(c_.nodes);
    for (int i = 0; i < c_.nodes; ++i) all[i] = i;

    std::vector<Record> before = MakeRecords(rng_, c_.records, c_.value_size, "pre", all);
    Phase store_before("store before kills");
    StoreAll(&before, &store_before);

    std::vector<int> survivors = Kill();
    for (Record& r : before) r.reader = PickOther(rng_, survivors, r.writer);

    Phase get_before("get pre-kill records after kills");
    GetAll(&before, &get_before);

    std::vector<Record> after =
        MakeRecords(rng_, c_.post_kill_records, c_.value_size, "post", survivors);
    for (Record& r : after) r.reader = PickOther(rng_, survivors, r.writer);
    Phase store_after("store after kills");
    Phase get_after("get post-kill records");
    if (!after.empty()) {
      StoreAll(&after, &store_after);
      GetAll(&after, &get_after);
    }

    std::printf("\n");
    store_before.Print(wall_[0]);
    get_before.Print(wall_[1]);
    if (!after.empty()) {
      store_after.Print(wall_[2]);
      get_after.Print(wall_[3]);
    }
    const absl::Duration near_timeout = c_.get_timeout - absl::Milliseconds(50);
    std::printf(
        "gets that ran into their %.1f s timeout: pre-kill %d/%d, post-kill %d/%d\n",
        absl::ToDoubleSeconds(c_.get_timeout), get_before.AtLeast(near_timeout),
        get_before.total(), get_after.AtLeast(near_timeout), get_after.total());

    int confirmed = 0, found = 0, unconfirmed_found = 0;
    for (const Record& r : before) {
      if (r.stored) {
        ++confirmed;
        found += r.found;
      } else {
        unconfirmed_found += r.found;
      }
    }
    if (confirmed < c_.records) {
      std::printf(
          "pre-kill records whose store was not confirmed: %d (found anyway: %d)\n",
          c_.records - confirmed, unconfirmed_found);
    }
    for (const Record& r : before) {
      if (r.stored && !r.found) Recheck(r, survivors);
    }
    std::printf("total time %.1f s\n", absl::ToDoubleSeconds(absl::Now() - start_));
    std::printf("get_success_after_kills=%.4f\n",
                confirmed == 0 ? 0.0 : static_cast<double>(found) / confirmed);
    Shutdown();
    return 0;
  }

 private:
  bool StartSwarm() {
    start_ = absl::Now();
    nodes_.resize(c_.nodes);
    dead_.assign(c_.nodes, false);
    for (int i = 0; i < c_.nodes; ++i) {
      DhtOptions options;
      options.run_id = "dht-benchmark";
      options.listen_address = "127.0.0.1:0";
      if (i > 0) {
        const int via =
            c_.join_random ? std::uniform_int_distribution<int>(0, i - 1)(rng_) : 0;
        options.initial_peers = {nodes_[via]->address()};
      }
      auto node = OpenDhtNode::Create(options);
      if (!node.ok()) {
        std::fprintf(stderr, "node %d: %s\n", i, node.status().ToString().c_str());
        Shutdown();
        return false;
      }
      nodes_[i] = std::move(node).value();
      if (c_.warmup_lookup) {
        (void)nodes_[i]->Get(absl::StrCat("warmup/", RandomString(rng_, 16)),
                             absl::Seconds(2));
      }
    }
    const absl::Duration joined = absl::Now() - start_;
    absl::SleepFor(c_.settle);
    std::vector<int> known;
    for (const auto& node : nodes_) known.push_back(node->known_nodes());
    std::sort(known.begin(), known.end());
    std::printf(
        "%d nodes joined (%s) in %.1f s; known nodes per node after %.1f s: min %d, "
        "median %d, max %d\n",
        c_.nodes,
        c_.join_random ? "each through a random earlier node" : "all through node 0",
        absl::ToDoubleSeconds(joined), absl::ToDoubleSeconds(c_.settle), known.front(),
        known[known.size() / 2], known.back());
    return true;
  }

  // Silently kills round(failure_rate * nodes) nodes (never all); returns survivors.
  std::vector<int> Kill() {
    std::vector<int> order(c_.nodes);
    for (int i = 0; i < c_.nodes; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng_);
    const int kills =
        std::min(c_.nodes - 1, static_cast<int>(std::lround(c_.failure_rate * c_.nodes)));
    std::vector<int> victims(order.begin(), order.begin() + kills);
    std::sort(victims.begin(), victims.end());
    const absl::Time t0 = absl::Now();
    RunParallel(kills, kills, [&](int i) { nodes_[victims[i]]->Shutdown(); });
    std::string list;
    for (int v : victims) {
      dead_[v] = true;
      absl::StrAppend(&list, list.empty() ? "" : ",", v);
    }
    std::printf("killed %d of %d nodes in %.1f s (bootstrap node 0 %s): %s\n", kills,
                c_.nodes, absl::ToDoubleSeconds(absl::Now() - t0),
                dead_[0] ? "among them" : "survives", list.c_str());
    std::vector<int> survivors;
    for (int i = 0; i < c_.nodes; ++i) {
      if (!dead_[i]) survivors.push_back(i);
    }
    return survivors;
  }

  void StoreAll(std::vector<Record>* records, Phase* phase) {
    std::vector<std::pair<bool, absl::Duration>> out(records->size());
    const absl::Time t0 = absl::Now();
    RunParallel(records->size(), c_.threads, [&](int i) {
      Record& r = (*records)[i];
      const absl::Time start = absl::Now();
      absl::Status s = nodes_[r.writer]->Store(
          r.key, "s", r.value, absl::Now() + absl::Minutes(5), c_.store_timeout);
      out[i] = {s.ok(), absl::Now() - start};
      r.stored = s.ok();
      if (!s.ok() && verbose_errors_-- > 0) {
        std::fprintf(stderr, "store %s from node %d: %s\n", r.key.c_str(), r.writer,
                     s.ToString().c_str());
      }
    });
    wall_.push_back(absl::Now() - t0);
    for (const auto& [ok, latency] : out) phase->Add(ok, latency);
  }

  void GetAll(std::vector<Record>* records, Phase* phase) {
    std::vector<std::pair<bool, absl::Duration>> out(records->size());
    const absl::Time t0 = absl::Now();
    RunParallel(records->size(), c_.threads, [&](int i) {
      Record& r = (*records)[i];
      const absl::Time start = absl::Now();
      auto got = nodes_[r.reader]->Get(r.key, c_.get_timeout);
      const absl::Duration latency = absl::Now() - start;
      bool found = false;
      if (got.ok()) {
        for (const DhtRecord& rec : *got) {
          found |= rec.subkey == "s" && rec.value == r.value &&
                   rec.writer == nodes_[r.writer]->id();
        }
      }
      r.found = found;
      out[i] = {found, latency};
    });
    wall_.push_back(absl::Now() - t0);
    for (const auto& [ok, latency] : out) phase->Add(ok, latency);
  }

  // Diagnoses a missed record: asks every survivor for it again (the record is lost,
  // or some lookups do not reach the nodes that hold it).
  void Recheck(const Record& r, const std::vector<int>& survivors) {
    std::atomic<int> found{0};
    RunParallel(survivors.size(), c_.threads, [&](int i) {
      auto got = nodes_[survivors[i]]->Get(r.key, c_.get_timeout);
      if (!got.ok()) return;
      for (const DhtRecord& rec : *got) {
        if (rec.value == r.value) {
          ++found;
          break;
        }
      }
    });
    std::printf(
        "missed: key %s writer %d (%s) reader %d; re-asked, %d of %d survivors "
        "find it\n",
        r.key.c_str(), r.writer, dead_[r.writer] ? "dead" : "alive", r.reader,
        found.load(), static_cast<int>(survivors.size()));
  }

  void Shutdown() {
    RunParallel(nodes_.size(), c_.threads, [&](int i) {
      if (nodes_[i] != nullptr) nodes_[i]->Shutdown();
    });
    nodes_.clear();
  }

  Config c_;
  Rng rng_;
  absl::Time start_;
  std::vector<std::unique_ptr<OpenDhtNode>> nodes_;
  std::vector<bool> dead_;
  std::vector<absl::Duration> wall_;
  std::atomic<int> verbose_errors_{5};
};

}  // namespace
}  // namespace hivemind

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto config = hivemind::ReadFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  return hivemind::Bench(*config).Run();
}
