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

sdk::Status StagingRegistrar::add(ComponentKind kind, const char* name, const char* help, AnyFactory factory) noexcept {
  return sdk::guard([&]() -> sdk::Status {
    if (!is_valid_component_name(name)) {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument,
                                "component name '%s' is not a non-empty [a-z0-9_.-] string", name ? name : "(null)");
    }
    const bool no_factory = std::visit([](auto function) { return function == nullptr; }, factory);
    if (no_factory) {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "component '%s' has no factory", name);
    }
    const bool repeated = std::any_of(staged_.begin(), staged_.end(), [&](const RegisteredComponent& entry) {
      return entry.info.kind == kind && entry.info.name == name;
    });
    if (repeated) {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "component %s/%s is registered twice",
                                component_kind_name(kind), name);
    }
    RegisteredComponent entry;
    entry.info = template_;
    entry.info.kind = kind;
    entry.info.name = name;
    entry.info.help = help ? help : "";
    entry.factory = factory;
    staged_.push_back(std::move(entry));
    return sdk::Status::success();
  });
}

sdk::Status StagingRegistrar::add_mixer(const char* name, const char* help, sdk::MixerFactory factory) noexcept {
  return add(ComponentKind::kMixer, name, help, factory);
}

sdk::Status StagingRegistrar::add_head(const char* name, const char* help, sdk::HeadFactory factory) noexcept {
  return add(ComponentKind::kHead, name, help, factory);
}

sdk::Status StagingRegistrar::add_scan(const char* name, const char* help, sdk::ScanFactory factory) noexcept {
  return add(ComponentKind::kScan, name, help, factory);
}

}  // namespace mambakit::plugins
