#include "staging_registrar.hpp"

#include <algorithm>

namespace mambakit::plugins {
namespace {

bool is_valid_component_name(const char* name) {
  if (name == nullptr || *name == '\0') return false;
  for (const char* c = name; *c != '\0'; ++c) {
    const bool allowed = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '.' || *c == '-';
    if (!allowed) return false;
  }
  return true;
}

}  // namespace

sdk::Status StagingRegistrar::add(ComponentKind kind, const char* kernel_kind, const char* name, const char* help,
                                  AnyFactory factory) noexcept {
  return sdk::guard([&]() -> sdk::Status {
    if (kind == ComponentKind::kKernel && !is_valid_component_name(kernel_kind)) {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument,
                                "kernel kind '%s' is not a non-empty [a-z0-9_.-] string",
                                kernel_kind ? kernel_kind : "(null)");
    }
    if (!is_valid_component_name(name)) {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument,
                                "component name '%s' is not a non-empty [a-z0-9_.-] string", name ? name : "(null)");
    }
    const bool no_factory = std::visit([](auto function) { return function == nullptr; }, factory);
    if (no_factory) {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "component '%s' has no factory", name);
    }
    RegisteredComponent entry;
    entry.info = template_;
    entry.info.kind = kind;
    entry.info.kernel_kind = kind == ComponentKind::kKernel ? kernel_kind : "";
    entry.info.name = name;
    const std::string key = entry.info.key();
    const bool repeated = std::any_of(staged_.begin(), staged_.end(),
                                      [&](const RegisteredComponent& other) { return other.info.key() == key; });
    if (repeated) {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "component %s is registered twice", key.c_str());
    }
    entry.info.help = help ? help : "";
    entry.factory = factory;
    staged_.push_back(std::move(entry));
    return sdk::Status::success();
  });
}

sdk::Status StagingRegistrar::add_mixer(const char* name, const char* help, sdk::MixerFactory factory) noexcept {
  return add(ComponentKind::kMixer, nullptr, name, help, factory);
}

sdk::Status StagingRegistrar::add_head(const char* name, const char* help, sdk::HeadFactory factory) noexcept {
  return add(ComponentKind::kHead, nullptr, name, help, factory);
}

sdk::Status StagingRegistrar::add_kernel(const char* kind, const char* name, const char* help,
                                         sdk::KernelFactory factory) noexcept {
  return add(ComponentKind::kKernel, kind, name, help, factory);
}

sdk::Status StagingRegistrar::add_config_adapter(const char* name, const char* help,
                                                 sdk::ConfigAdapterFactory factory) noexcept {
  return add(ComponentKind::kConfigAdapter, nullptr, name, help, factory);
}

}  // namespace mambakit::plugins
