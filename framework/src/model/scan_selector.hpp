#pragma once
// Chooses the scan backend for each problem a model runs: a named one, or for "auto" the
// highest-scoring of every loaded backend (instantiated once, asked per problem shape).

#include <string>
#include <utility>
#include <vector>

#include "mambakit/plugin_host.hpp"

namespace mambakit::model {

struct SelectedScan {
  sdk::ScanBackend* backend = nullptr;
  std::string name;
};

class ScanSelector {
 public:
  ScanSelector() = default;
  /// Instantiates `name`'s backend, or every scan backend for "auto". Throws when `name` is
  /// unknown (listing the available ones).
  ScanSelector(const PluginHost& host, const std::string& name);

  /// The backend for `problem`. Throws when none can run it, giving each one's score.
  [[nodiscard]] SelectedScan select(const sdk::ScanProblem& problem) const;

 private:
  std::vector<std::pair<std::string, ScanPtr>> candidates_;
};

}  // namespace mambakit::model
