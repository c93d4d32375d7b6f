#pragma once
/// \file
/// PluginHost: loads plugin libraries, keeps the registry of their components, and creates
/// components that keep their library loaded for as long as they live.

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "mambakit/sdk/head.hpp"
#include "mambakit/sdk/mixer.hpp"
#include "mambakit/sdk/scan_backend.hpp"

namespace mambakit {

/// The kinds of component a plugin can register.
enum class ComponentKind { kMixer, kHead, kScan };

/// "mixer", "head" or "scan".
const char* component_kind_name(ComponentKind kind);

/// A registered component, as `mambakit plugins` lists it.
struct ComponentInfo {
  ComponentKind kind = ComponentKind::kMixer;
  std::string name;             ///< short name, e.g. "s6"
  std::string help;             ///< one line
  std::filesystem::path file;   ///< the plugin library it came from
  std::string plugin_name;
  std::string plugin_version;

  /// "kind/name", e.g. "scan/sequential".
  [[nodiscard]] std::string key() const;
};

/// A plugin file that could not be used, and why.
struct PluginLoadFailure {
  std::filesystem::path file;
  std::string reason;
};

/// Deletes a plugin-made object, then lets go of the library that made it: the object's code
/// stays loaded for as long as the object exists, even after the PluginHost is gone.
template <class Interface>
class PinnedDeleter {
 public:
  PinnedDeleter() = default;
  explicit PinnedDeleter(std::shared_ptr<const void> library) : library_(std::move(library)) {}
  void operator()(Interface* object) const { delete object; }

 private:
  std::shared_ptr<const void> library_;
};

using MixerPtr = std::unique_ptr<sdk::Mixer, PinnedDeleter<sdk::Mixer>>;
using HeadPtr = std::unique_ptr<sdk::Head, PinnedDeleter<sdk::Head>>;
using ScanPtr = std::unique_ptr<sdk::ScanBackend, PinnedDeleter<sdk::ScanBackend>>;

/// A scan backend chosen for a problem, with its registered name.
struct ScanChoice {
  ScanPtr backend;
  std::string name;
};

/// Loads plugins and creates their components. Not thread-safe while loading; creating
/// components from several threads is safe once loading is done.
class PluginHost {
 public:
  PluginHost();
  ~PluginHost();
  PluginHost(const PluginHost&) = delete;
  PluginHost& operator=(const PluginHost&) = delete;

  /// The folder of the plugins that ship with mambakit: <libdir>/mambakit/plugins beside the
  /// mambakit library itself, in the build tree and when installed.
  static std::filesystem::path default_plugin_dir();

  /// The folders in the MAMBAKIT_PLUGIN_PATH environment variable (colon-separated).
  static std::vector<std::filesystem::path> environment_plugin_dirs();

  /// Loads the default folder, then MAMBAKIT_PLUGIN_PATH, then `extra_dirs` (e.g. from
  /// --plugin-dir). A folder that does not exist is recorded as a failure.
  void load_standard_locations(const std::vector<std::filesystem::path>& extra_dirs = {});

  /// Loads every shared library (by platform suffix) in `dir`, in name order. Failures are
  /// recorded and skipped. Returns the number of plugins loaded.
  int load_directory(const std::filesystem::path& dir);

  /// Loads one plugin library. On failure records the reason and returns false. A file that
  /// was already loaded (same canonical path) is skipped and counts as success.
  bool load_file(const std::filesystem::path& file);

  /// Plugins that could not be used, in the order they were tried.
  [[nodiscard]] const std::vector<PluginLoadFailure>& failures() const;

  /// Every registered component, sorted by kind then name.
  [[nodiscard]] std::vector<ComponentInfo> components() const;

  /// Names of the registered components of `kind`, sorted.
  [[nodiscard]] std::vector<std::string> names(ComponentKind kind) const;

  /// Creates component `name` of each kind from `config_json`. Throws mambakit::Error when
  /// the name is unknown (the message lists the available ones) or the factory fails (the
  /// message carries the plugin's Status).
  [[nodiscard]] MixerPtr create_mixer(const std::string& name, const std::string& config_json) const;
  [[nodiscard]] HeadPtr create_head(const std::string& name, const std::string& config_json) const;
  [[nodiscard]] ScanPtr create_scan(const std::string& name, const std::string& config_json = "{}") const;

  /// Creates the scan backend named `name`, or for "auto" the one with the highest score for
  /// `problem` (ties go to the first name in order). Throws when none can run it; the message
  /// gives each backend's score.
  [[nodiscard]] ScanChoice choose_scan(const std::string& name, const sdk::ScanProblem& problem) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mambakit
