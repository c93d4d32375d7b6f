#pragma once
/// \file
/// PluginHost: loads plugin libraries, keeps the registry of their components, and creates
/// components that keep their library loaded for as long as they live.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "mambakit/sdk/config_adapter.hpp"
#include "mambakit/sdk/head.hpp"
#include "mambakit/sdk/kernel.hpp"
#include "mambakit/sdk/mixer.hpp"

namespace mambakit {

/// The kinds of component a plugin can register.
enum class ComponentKind { kMixer, kHead, kKernel, kConfigAdapter };

/// "mixer", "head", "kernel" or "config".
const char* component_kind_name(ComponentKind kind);

/// A registered component, as `mambakit plugins` lists it.
struct ComponentInfo {
  ComponentKind kind = ComponentKind::kMixer;
  std::string kernel_kind;      ///< for a kernel, its kind (e.g. "selective_scan"); empty otherwise
  std::string name;             ///< short name, e.g. "s6"
  std::string help;             ///< one line
  std::filesystem::path file;   ///< the plugin library it came from
  std::string plugin_name;
  std::string plugin_version;
  std::uint32_t abi_minor = 0;  ///< the SDK minor the plugin was built for (see sdk/plugin.hpp)

  /// "mixer/s6", "head/lm", "config/NAME", and for a kernel "KIND/NAME" (e.g.
  /// "selective_scan/sequential").
  [[nodiscard]] std::string key() const;
};

/// A plugin file that could not be used, and why.
struct PluginLoadFailure {
  std::filesystem::path file;
  std::string reason;
};

/// Deletes a plugin-made object, then lets go of the library that made it: the object's code
/// stays loaded for as long as the object exists, even after the PluginHost is gone.
/// It also carries the ABI minor of that plugin, so that the host never calls a method the
/// plugin's vtable does not have (abi_minor()).
template <class Interface>
class PinnedDeleter {
 public:
  PinnedDeleter() = default;
  PinnedDeleter(std::shared_ptr<const void> library, std::uint32_t abi_minor)
      : library_(std::move(library)), abi_minor_(abi_minor) {}
  /// Converts between the deleters of an interface and its base or derived interface.
  template <class Other>
  PinnedDeleter(const PinnedDeleter<Other>& other) : library_(other.library()), abi_minor_(other.abi_minor()) {}
  void operator()(Interface* object) const { delete object; }
  [[nodiscard]] const std::shared_ptr<const void>& library() const { return library_; }
  [[nodiscard]] std::uint32_t abi_minor() const { return abi_minor_; }

 private:
  std::shared_ptr<const void> library_;
  std::uint32_t abi_minor_ = 0;
};

template <class Interface>
using PluginPtr = std::unique_ptr<Interface, PinnedDeleter<Interface>>;
using MixerPtr = PluginPtr<sdk::Mixer>;
using HeadPtr = PluginPtr<sdk::Head>;
using KernelPtr = PluginPtr<sdk::Kernel>;
using ConfigAdapterPtr = PluginPtr<sdk::ConfigAdapter>;

/// The ABI minor of the plugin that made `object`.
template <class Interface>
std::uint32_t abi_minor(const PluginPtr<Interface>& object) {
  return object.get_deleter().abi_minor();
}

/// A kernel as its kind's interface (e.g. sdk::ScanBackend for "selective_scan"): the plugins
/// of a kind register only objects that derive from its interface.
template <class KindInterface>
PluginPtr<KindInterface> kernel_as(KernelPtr kernel) {
  PinnedDeleter<KindInterface> deleter(kernel.get_deleter());
  return PluginPtr<KindInterface>(static_cast<KindInterface*>(kernel.release()), std::move(deleter));
}

/// A kernel chosen for a problem, with its registered name.
struct KernelChoice {
  KernelPtr kernel;
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

  /// Names of the registered components of `kind` (mixers, heads or config adapters), sorted.
  [[nodiscard]] std::vector<std::string> names(ComponentKind kind) const;
  /// Names of the registered kernels of `kernel_kind`, sorted.
  [[nodiscard]] std::vector<std::string> kernel_names(const std::string& kernel_kind) const;
  /// The kernel kinds that have at least one registered kernel, sorted.
  [[nodiscard]] std::vector<std::string> kernel_kinds() const;

  /// Creates component `name` of each kind from `config_json`. Throws mambakit::Error when
  /// the name is unknown (the message lists the available ones) or the factory fails (the
  /// message carries the plugin's Status).
  [[nodiscard]] MixerPtr create_mixer(const std::string& name, const std::string& config_json) const;
  [[nodiscard]] HeadPtr create_head(const std::string& name, const std::string& config_json) const;
  [[nodiscard]] KernelPtr create_kernel(const std::string& kernel_kind, const std::string& name,
                                        const std::string& config_json = "{}") const;
  [[nodiscard]] ConfigAdapterPtr create_config_adapter(const std::string& name) const;

  /// Creates the kernel of `kernel_kind` named `name`, or for "auto" the one with the highest
  /// score for `problem` (ties go to the first name in order). Throws when none can run it;
  /// the message gives each kernel's score.
  [[nodiscard]] KernelChoice choose_kernel(const std::string& kernel_kind, const std::string& name,
                                           const sdk::KernelProblem& problem) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mambakit
