#include "plugin_library.hpp"

#include <fmt/format.h>
#include <fmt/std.h>

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>
#include <cstring>
#include <fstream>

#include "mambakit/error.hpp"

namespace mambakit::plugins {

void check_plugin_info(const sdk::PluginInfo& info) {
  if (info.abi_major != sdk::kAbiMajor || info.abi_minor > sdk::kAbiMinor) {
    throw Error(fmt::format("ABI mismatch: the plugin was built for mambakit ABI {}.{}, this host has ABI {}.{}",
                            info.abi_major, info.abi_minor, sdk::kAbiMajor, sdk::kAbiMinor));
  }
  if (info.toolchain == nullptr || std::strcmp(info.toolchain, MAMBAKIT_TOOLCHAIN_TAG) != 0) {
    throw Error(fmt::format("toolchain mismatch: the plugin was built for '{}', this host is '{}'",
                            info.toolchain ? info.toolchain : "(none)", MAMBAKIT_TOOLCHAIN_TAG));
  }
  if (info.name == nullptr || info.version == nullptr || info.register_components == nullptr) {
    throw Error("the plugin's PluginInfo lacks a name, a version or a register function");
  }
}

PluginLibrary open_plugin_library(const std::filesystem::path& file) {
  auto library = std::make_shared<boost::dll::shared_library>();
  std::error_code error;
  library->load(file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, error);
  if (error) {
    std::ifstream bytes(file, std::ios::binary);
    char magic[4] = {};
    bytes.read(magic, sizeof magic);
    const bool elf = bytes.gcount() == 4 && magic[0] == '\x7f' && magic[1] == 'E' && magic[2] == 'L' && magic[3] == 'F';
    throw Error(elf ? fmt::format("the shared library cannot be loaded ({}): a missing dependency, or built for "
                                  "another machine",
                                  error.message())
                    : std::string("not a shared library (the file is not an ELF object)"));
  }
  if (!library->has(sdk::kPluginEntrySymbol)) {
    throw Error(fmt::format("no plugin entry: the library does not export '{}' (use MAMBAKIT_PLUGIN)",
                            sdk::kPluginEntrySymbol));
  }
  auto& entry = library->get_alias<sdk::PluginEntry>(sdk::kPluginEntrySymbol);
  const sdk::PluginInfo* info = entry();
  if (info == nullptr) {
    throw Error("the plugin entry returned no PluginInfo");
  }
  check_plugin_info(*info);
  return PluginLibrary{std::shared_ptr<const void>(library), info, file};
}

std::filesystem::path shared_library_suffix() { return boost::dll::shared_library::suffix(); }

std::filesystem::path host_library_location() { return boost::dll::this_line_location(); }

}  // namespace mambakit::plugins
