#include "scan_selector.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "mambakit/error.hpp"

namespace mambakit::model {

ScanSelector::ScanSelector(const PluginHost& host, const std::string& name) {
  if (name == "auto") {
    for (const auto& candidate : host.names(ComponentKind::kScan)) candidates_.emplace_back(candidate, host.create_scan(candidate));
    if (candidates_.empty()) throw Error("no scan backend is loaded: check the plugin folders (mambakit plugins)");
  } else {
    candidates_.emplace_back(name, host.create_scan(name));
  }
}

SelectedScan ScanSelector::select(const sdk::ScanProblem& problem) const {
  SelectedScan best;
  std::int32_t best_score = 0;
  std::vector<std::string> scores;
  for (const auto& [name, backend] : candidates_) {
    const std::int32_t score = backend->score(problem);
    scores.push_back(fmt::format("{}={}", name, score));
    if (score > best_score) {
      best_score = score;
      best = {backend.get(), name};
    }
  }
  if (best.backend == nullptr) {
    throw Error(fmt::format("no scan backend can run a (batch {}, length {}, d_inner {}, d_state {}) {} problem on {}; "
                            "scores: {}",
                            problem.batch, problem.length, problem.d_inner, problem.d_state,
                            sdk::dtype_name(problem.dtype), sdk::device_type_name(problem.device.type),
                            fmt::join(scores, ", ")));
  }
  return best;
}

}  // namespace mambakit::model
