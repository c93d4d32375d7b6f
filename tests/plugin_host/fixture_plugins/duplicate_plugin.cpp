// Registers scan/sequential, which the in-tree reference plugin already provides: the host
// must refuse this whole plugin and name both files.

#include "inert_scan.hpp"

namespace duplicate_plugin {

namespace sdk = mambakit::sdk;
using fixture_plugins::InertScan;

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(registrar.add_kernel(mambakit::sdk::kSelectiveScanKind, "test_unique_before_duplicate", "test: staged, then dropped",
                                              &sdk::create_component<sdk::Kernel, InertScan>));
  return registrar.add_kernel(mambakit::sdk::kSelectiveScanKind, "sequential", "test: a second scan/sequential",
                            &sdk::create_component<sdk::Kernel, InertScan>);
}

}  // namespace duplicate_plugin

MAMBAKIT_PLUGIN("test-duplicate", "0.0.1", duplicate_plugin::register_components)
