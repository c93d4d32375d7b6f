#include "mambakit/conformance.hpp"

#include <fmt/format.h>

#include "mambakit/error.hpp"

namespace mambakit {

namespace conformance {
std::vector<ConformanceCheck> check_mixer(const PluginHost& host, const std::string& name, const ConformanceSetup& setup);
std::vector<ConformanceCheck> check_head(const PluginHost& host, const std::string& name, const ConformanceSetup& setup);
}  // namespace conformance

std::vector<ConformanceCheck> check_component(const PluginHost& host, const std::string& key,
                                              const ConformanceSetup& setup) {
  const auto slash = key.find('/');
  const std::string kind = key.substr(0, slash), name = slash == std::string::npos ? "" : key.substr(slash + 1);
  if (slash == std::string::npos || name.empty() || (kind != "mixer" && kind != "head")) {
    throw Error(fmt::format("'{}' is not KIND/NAME with KIND mixer or head (mixer/NAME or head/NAME, as `mambakit plugins` lists them)", key));
  }
  if (setup.d_model < 1 || setup.batch < 1 || setup.length < 2) {
    throw Error(fmt::format("the check needs d_model >= 1, batch >= 1 and length >= 2, got {}, {}, {}", setup.d_model,
                            setup.batch, setup.length));
  }
  return kind == "mixer" ? conformance::check_mixer(host, name, setup) : conformance::check_head(host, name, setup);
}

}  // namespace mambakit
