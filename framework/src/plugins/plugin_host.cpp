#include "mambakit/plugin_host.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fmt/std.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>

#include "mambakit/error.hpp"
#include "kernel_registry.hpp"
#include "plugin_library.hpp"
#include "staging_registrar.hpp"

namespace mambakit {

const char* component_kind_name(ComponentKind kind) {
  switch (kind) {
    case ComponentKind::kMixer: return "mixer";
    case ComponentKind::kHead: return "head";
    case ComponentKind::kKernel: return "kernel";
    case ComponentKind::kConfigAdapter: return "config";
  }
  return "unknown";
}

std::string ComponentInfo::key() const {
  return fmt::format("{}/{}", kind == ComponentKind::kKernel ? kernel_kind : std::string(component_kind_name(kind)),
                     name);
}

struct PluginHost::Impl {
  std::map<std::string, plugins::RegisteredComponent> registry;  // by key
  std::set<std::filesystem::path> loaded_files;                   // canonical paths
  std::vector<PluginLoadFailure> failures;

  const plugins::RegisteredComponent& find(ComponentKind kind, const std::string& kernel_kind,
                                           const std::string& name) const {
    ComponentInfo wanted;
    wanted.kind = kind;
    wanted.kernel_kind = kernel_kind;
    wanted.name = name;
    auto found = registry.find(wanted.key());
    if (found == registry.end()) {
      std::vector<std::string> available;
      for (const auto& [other_key, entry] : registry) {
        if (entry.info.kind == kind && entry.info.kernel_kind == kernel_kind) available.push_back(entry.info.name);
      }
      const std::string what = kind == ComponentKind::kKernel ? kernel_kind + " kernel" : component_kind_name(kind);
      throw Error(fmt::format("unknown {} '{}'; available: {}", what, name,
                              available.empty() ? std::string("(none: no plugin provides one)")
                                                : fmt::format("{}", fmt::join(available, ", "))));
    }
    return found->second;
  }

  template <class Interface, class Factory>
  PluginPtr<Interface> create(ComponentKind kind, const std::string& kernel_kind, const std::string& name,
                              const std::string& config_json) const {
    const plugins::RegisteredComponent& entry = find(kind, kernel_kind, name);
    Interface* object = nullptr;
    const sdk::Status status = std::get<Factory>(entry.factory)(config_json.c_str(), &object);
    if (!status.ok() || object == nullptr) {
      throw Error(fmt::format("{} (from {}) could not be created: {}", entry.info.key(), entry.info.file,
                              status.ok() ? "the factory returned no object" : status.message));
    }
    return PluginPtr<Interface>(object, PinnedDeleter<Interface>(entry.keep_alive, entry.info.abi_minor));
  }
};

PluginHost::PluginHost() : impl_(std::make_unique<Impl>()) {}
PluginHost::~PluginHost() = default;

std::filesystem::path PluginHost::default_plugin_dir() {
  return plugins::host_library_location().parent_path() / "mambakit" / "plugins";
}

std::vector<std::filesystem::path> PluginHost::environment_plugin_dirs() {
  std::vector<std::filesystem::path> dirs;
  const char* value = std::getenv("MAMBAKIT_PLUGIN_PATH");
  if (value == nullptr) return dirs;
  std::stringstream stream(value);
  std::string item;
  while (std::getline(stream, item, ':')) {
    if (!item.empty()) dirs.emplace_back(item);
  }
  return dirs;
}

void PluginHost::load_standard_locations(const std::vector<std::filesystem::path>& extra_dirs) {
  load_directory(default_plugin_dir());
  for (const auto& dir : environment_plugin_dirs()) load_directory(dir);
  for (const auto& dir : extra_dirs) load_directory(dir);
}

int PluginHost::load_directory(const std::filesystem::path& dir) {
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) {
    impl_->failures.push_back({dir, "plugin folder does not exist or is not a folder"});
    return 0;
  }
  std::vector<std::filesystem::path> files;
  const auto suffix = plugins::shared_library_suffix();
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (entry.is_regular_file(error) && entry.path().extension() == suffix) files.push_back(entry.path());
  }
  if (error) {
    impl_->failures.push_back({dir, fmt::format("cannot list the plugin folder: {}", error.message())});
  }
  std::sort(files.begin(), files.end());
  int loaded = 0;
  for (const auto& file : files) loaded += load_file(file) ? 1 : 0;
  return loaded;
}

bool PluginHost::load_file(const std::filesystem::path& file) {
  std::error_code error;
  const std::filesystem::path canonical = std::filesystem::weakly_canonical(file, error);
  if (error || !std::filesystem::is_regular_file(canonical, error)) {
    impl_->failures.push_back({file, "plugin file does not exist or is not a regular file"});
    return false;
  }
  if (impl_->loaded_files.count(canonical) != 0) return true;
  try {
    plugins::PluginLibrary library = plugins::open_plugin_library(canonical);
    ComponentInfo plugin_template;
    plugin_template.file = canonical;
    plugin_template.plugin_name = library.info->name;
    plugin_template.plugin_version = library.info->version;
    plugin_template.abi_minor = library.info->abi_minor;
    plugins::StagingRegistrar registrar(plugin_template);
    const sdk::Status status = library.info->register_components(registrar);
    if (!status.ok()) {
      throw Error(fmt::format("registration failed: {}", status.message));
    }
    for (const auto& staged : registrar.staged()) {
      auto existing = impl_->registry.find(staged.info.key());
      if (existing != impl_->registry.end()) {
        throw Error(fmt::format("duplicate component {}: already registered by {}, registered again by {}",
                                staged.info.key(), existing->second.info.file, canonical));
      }
    }
    for (auto& staged : registrar.staged()) {
      staged.keep_alive = library.keep_alive;
      impl_->registry.emplace(staged.info.key(), std::move(staged));
    }
    impl_->loaded_files.insert(canonical);
    return true;
  } catch (const std::exception& failure) {
    impl_->failures.push_back({canonical, failure.what()});
    return false;
  }
}

const std::vector<PluginLoadFailure>& PluginHost::failures() const { return impl_->failures; }

std::vector<ComponentInfo> PluginHost::components() const {
  std::vector<ComponentInfo> list;
  for (const auto& [key, entry] : impl_->registry) list.push_back(entry.info);
  std::sort(list.begin(), list.end(), [](const ComponentInfo& a, const ComponentInfo& b) {
    return std::tie(a.kind, a.name) < std::tie(b.kind, b.name);
  });
  return list;
}

std::vector<std::string> PluginHost::names(ComponentKind kind) const {
  std::vector<std::string> list;
  for (const auto& info : components()) {
    if (info.kind == kind) list.push_back(info.name);
  }
  return list;
}

std::vector<std::string> PluginHost::kernel_names(const std::string& kernel_kind) const {
  std::vector<std::string> list;
  for (const auto& info : components()) {
    if (info.kind == ComponentKind::kKernel && info.kernel_kind == kernel_kind) list.push_back(info.name);
  }
  return list;
}

std::vector<std::string> PluginHost::kernel_kinds() const {
  std::set<std::string> kinds;
  for (const auto& info : components()) {
    if (info.kind == ComponentKind::kKernel) kinds.insert(info.kernel_kind);
  }
  return {kinds.begin(), kinds.end()};
}

MixerPtr PluginHost::create_mixer(const std::string& name, const std::string& config_json) const {
  return impl_->create<sdk::Mixer, sdk::MixerFactory>(ComponentKind::kMixer, "", name, config_json);
}

HeadPtr PluginHost::create_head(const std::string& name, const std::string& config_json) const {
  return impl_->create<sdk::Head, sdk::HeadFactory>(ComponentKind::kHead, "", name, config_json);
}

KernelPtr PluginHost::create_kernel(const std::string& kernel_kind, const std::string& name,
                                    const std::string& config_json) const {
  return impl_->create<sdk::Kernel, sdk::KernelFactory>(ComponentKind::kKernel, kernel_kind, name, config_json);
}

ConfigAdapterPtr PluginHost::create_config_adapter(const std::string& name) const {
  return impl_->create<sdk::ConfigAdapter, sdk::ConfigAdapterFactory>(ComponentKind::kConfigAdapter, "", name, "{}");
}

KernelChoice PluginHost::choose_kernel(const std::string& kernel_kind, const std::string& name,
                                       const sdk::KernelProblem& problem) const {
  plugins::KernelRegistry registry(*this, {{kernel_kind, name}});
  const std::string chosen = registry.choose(kernel_kind, problem).name;
  return KernelChoice{create_kernel(kernel_kind, chosen), chosen};
}

}  // namespace mambakit
