#include "hivemind/optim/epoch_log.h"

#include <fstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "hivemind/util/logging.h"

namespace hivemind {

std::string EpochSummaryToJson(const EpochSummary& summary) {
  nlohmann::ordered_json line;
  line["time"] = absl::ToDoubleSeconds(summary.time - absl::UnixEpoch());
  line["peer"] = summary.peer;
  line["epoch"] = summary.epoch;
  line["loss"] = summary.mean_loss.has_value()
                     ? nlohmann::ordered_json(*summary.mean_loss)
                     : nlohmann::ordered_json(nullptr);
  line["samples_per_second"] = summary.samples_per_second;
  line["peers"] = summary.num_peers;
  line["averaged"] = summary.averaging_status.ok();
  line["group_size"] = summary.group_size;
  if (!summary.averaging_status.ok()) {
    line["error"] = std::string(summary.averaging_status.message());
  }
  // Invalid UTF-8 (a status message quoting network bytes) is replaced, not thrown.
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

EpochCallback AppendEpochJsonLines(std::string path) {
  return [path = std::move(path)](const EpochSummary& summary) {
    std::ofstream out(path, std::ios::app);
    out << EpochSummaryToJson(summary) << '\n';
    out.close();
    if (!out) HIVEMIND_LOG(kWarning, "cannot append the epoch log to ", path);
  };
}

}  // namespace hivemind
