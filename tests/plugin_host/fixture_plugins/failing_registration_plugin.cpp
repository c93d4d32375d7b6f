// A plugin whose registration fails halfway: nothing it staged may appear in the registry.

#include "inert_scan.hpp"

namespace failing_registration_plugin {

namespace sdk = mambakit::sdk;
using fixture_plugins::InertScan;

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(registrar.add_kernel(mambakit::sdk::kSelectiveScanKind, "test_half_registered", "test: staged before the failure",
                                              &sdk::create_component<sdk::Kernel, InertScan>));
  return registrar.add_kernel(mambakit::sdk::kSelectiveScanKind, "Bad Name!", "test: an invalid name",
                            &sdk::create_component<sdk::Kernel, InertScan>);
}

}  // namespace failing_registration_plugin

MAMBAKIT_PLUGIN("test-failing-registration", "0.0.1", failing_registration_plugin::register_components)
