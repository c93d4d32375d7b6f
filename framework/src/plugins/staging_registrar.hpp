#pragma once
// The Registrar a plugin's register callback fills. Entries are staged and only committed to
// the host's registry when the whole registration succeeded.

#include <string>
#include <variant>
#include <vector>

#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/registrar.hpp"

namespace mambakit::plugins {

using AnyFactory = std::variant<sdk::MixerFactory, sdk::HeadFactory, sdk::KernelFactory, sdk::ConfigAdapterFactory>;

/// A registered component: what is listed, how to make it, and the library that pins it.
struct RegisteredComponent {
  ComponentInfo info;
  AnyFactory factory;
  std::shared_ptr<const void> keep_alive;
};

class StagingRegistrar final : public sdk::Registrar {
 public:
  explicit StagingRegistrar(const ComponentInfo& plugin_template) : template_(plugin_template) {}

  sdk::Status add_mixer(const char* name, const char* help, sdk::MixerFactory factory) noexcept override;
  sdk::Status add_head(const char* name, const char* help, sdk::HeadFactory factory) noexcept override;
  sdk::Status add_kernel(const char* kind, const char* name, const char* help,
                         sdk::KernelFactory factory) noexcept override;
  sdk::Status add_config_adapter(const char* name, const char* help, sdk::ConfigAdapterFactory factory) noexcept override;

  /// The staged components (info and factory; keep_alive is left for the host to set).
  std::vector<RegisteredComponent>& staged() { return staged_; }

 private:
  sdk::Status add(ComponentKind kind, const char* kernel_kind, const char* name, const char* help,
                  AnyFactory factory) noexcept;

  ComponentInfo template_;
  std::vector<RegisteredComponent> staged_;
};

}  // namespace mambakit::plugins
