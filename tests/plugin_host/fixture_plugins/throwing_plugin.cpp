// A plugin whose factories throw: a std::runtime_error from one constructor and a
// std::invalid_argument (a config error) from another. Both must become Status values.

#include <stdexcept>
#include <string>

#include "inert_scan.hpp"

namespace throwing_plugin {

namespace sdk = mambakit::sdk;

struct ThrowingScan final : fixture_plugins::InertScan {
  explicit ThrowingScan(const char* config) : InertScan(config) { throw std::runtime_error("constructor exploded"); }
};

struct RejectingScan final : fixture_plugins::InertScan {
  explicit RejectingScan(const char* config) : InertScan(config) {
    throw std::invalid_argument(std::string("test_rejecting: bad key 'width' in ") + config);
  }
};

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(registrar.add_kernel(mambakit::sdk::kSelectiveScanKind, "test_throwing", "test: constructor throws",
                                              &sdk::create_component<sdk::Kernel, ThrowingScan>));
  return registrar.add_kernel(mambakit::sdk::kSelectiveScanKind, "test_rejecting", "test: rejects its config",
                            &sdk::create_component<sdk::Kernel, RejectingScan>);
}

}  // namespace throwing_plugin

MAMBAKIT_PLUGIN("test-throwing", "0.0.1", throwing_plugin::register_components)
