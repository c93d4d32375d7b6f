#pragma once
/// \file
/// Conformance checks for plugin authors (`mambakit check-plugin`): any registered mixer or
/// head is created on a small problem and held to the SDK's contracts against independent
/// references (finite differences, its own forward), without knowing what it computes.

#include <string>
#include <vector>

#include "mambakit/plugin_host.hpp"

namespace mambakit {

/// One check's outcome.
struct ConformanceCheck {
  std::string name;    ///< what is checked, e.g. "step equals forward"
  bool passed = false;
  bool skipped = false;  ///< the component does not offer what the check needs (e.g. no step)
  std::string detail;    ///< the measured numbers, or why it failed or was skipped
};

/// The problem the checks run on.
struct ConformanceSetup {
  std::string options = "{}";  ///< the component's own options (a JSON object's text)
  std::int64_t d_model = 8;
  std::int64_t batch = 2;
  std::int64_t length = 7;
  std::uint64_t seed = 1;
};

/// Runs every check on component `key` ("mixer/NAME" or "head/NAME") of `host`. Throws
/// mambakit::Error for an unknown key or kind; a component that cannot even be created with
/// `setup.options` gives one failed check.
std::vector<ConformanceCheck> check_component(const PluginHost& host, const std::string& key,
                                              const ConformanceSetup& setup = {});

}  // namespace mambakit
