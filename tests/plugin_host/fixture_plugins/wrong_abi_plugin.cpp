// A plugin built for a future ABI major: the host must refuse it without calling into it.

#include <cstdlib>

#include "mambakit/sdk/plugin.hpp"

namespace wrong_abi_plugin {

mambakit::sdk::Status register_components(mambakit::sdk::Registrar&) noexcept {
  std::abort();  // never called: the host checks the ABI first
}

const mambakit::sdk::PluginInfo* plugin_info() {
  static const mambakit::sdk::PluginInfo info{mambakit::sdk::kAbiMajor + 1, 0, MAMBAKIT_TOOLCHAIN_TAG,
                                              "test-wrong-abi", "9.9.9", &register_components};
  return &info;
}

}  // namespace wrong_abi_plugin

BOOST_DLL_ALIAS(wrong_abi_plugin::plugin_info, mambakit_plugin_info)
