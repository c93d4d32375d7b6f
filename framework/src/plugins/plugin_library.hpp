#pragma once
// Opening one plugin file: load the library, find its entry, check its ABI before any call
// into it. Internal to the framework (keeps Boost.DLL out of public headers).

#include <filesystem>
#include <memory>

#include "mambakit/sdk/plugin.hpp"

namespace mambakit::plugins {

/// A loaded plugin library whose ABI matched the host's.
struct PluginLibrary {
  /// Keeps the library mapped; copies of it pin the library.
  std::shared_ptr<const void> keep_alive;
  const sdk::PluginInfo* info = nullptr;  ///< points into the library
  std::filesystem::path file;
};

/// Checks what a plugin's entry returned: ABI major equal and minor not newer than the host's,
/// the host's toolchain, and a name, a version and a register function. Throws mambakit::Error
/// with the reason (naming both versions on an ABI mismatch).
void check_plugin_info(const sdk::PluginInfo& info);

/// Loads `file`, finds the exported entry and checks ABI major, minor and toolchain.
/// Throws mambakit::Error with the reason (naming both versions on an ABI mismatch).
PluginLibrary open_plugin_library(const std::filesystem::path& file);

/// The platform's shared-library suffix (".so" on Linux).
std::filesystem::path shared_library_suffix();

/// The file the mambakit host library was loaded from.
std::filesystem::path host_library_location();

}  // namespace mambakit::plugins
