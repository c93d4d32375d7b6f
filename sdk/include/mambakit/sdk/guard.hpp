#pragma once
/// \file
/// Keeping exceptions inside a plugin: guard() and the create_component() factory.

#include <exception>
#include <new>
#include <stdexcept>

#include "mambakit/sdk/status.hpp"

namespace mambakit::sdk {

/// Runs `body` (returning Status) and turns any exception it throws into a Status, so that no
/// exception crosses the plugin boundary.
template <class Body>
Status guard(Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Status::error(StatusCode::kOutOfMemory, "out of memory");
  } catch (const std::exception& error) {
    return Status::error(StatusCode::kInternal, "%s", error.what());
  } catch (...) {
    return Status::error(StatusCode::kInternal, "unknown exception");
  }
}

/// A factory (MixerFactory, HeadFactory, KernelFactory or ConfigAdapterFactory) that constructs `Impl` from the
/// config JSON text. A constructor that throws becomes a failed Status: std::invalid_argument
/// gives kInvalidArgument (use it for bad config keys and values), anything else kInternal.
template <class Interface, class Impl>
Status create_component(const char* config_json, Interface** out) noexcept {
  return guard([&]() -> Status {
    try {
      *out = new Impl(config_json);
    } catch (const std::invalid_argument& error) {
      return Status::error(StatusCode::kInvalidArgument, "%s", error.what());
    }
    return Status::success();
  });
}

}  // namespace mambakit::sdk
