#pragma once
// A scan backend that declares nothing and computes nothing: the base of the test plugins
// that only exercise loading and registration.

#include "mambakit/sdk/sdk.hpp"

namespace fixture_plugins {

struct InertScan : mambakit::sdk::ScanBackend {
  explicit InertScan(const char*) {}
  void capabilities(mambakit::sdk::ScanCapabilities*) const noexcept override {}
  std::int32_t score(const mambakit::sdk::KernelProblem&) const noexcept override { return 0; }
  mambakit::sdk::Status forward(const mambakit::sdk::Context&, const mambakit::sdk::ScanForwardArgs&) noexcept override {
    return mambakit::sdk::Status::error(mambakit::sdk::StatusCode::kUnsupported, "inert test scan");
  }
  mambakit::sdk::Status backward(const mambakit::sdk::Context&, const mambakit::sdk::ScanBackwardArgs&) noexcept override {
    return mambakit::sdk::Status::error(mambakit::sdk::StatusCode::kUnsupported, "inert test scan");
  }
  mambakit::sdk::Status step(const mambakit::sdk::Context&, const mambakit::sdk::ScanStepArgs&) noexcept override {
    return mambakit::sdk::Status::error(mambakit::sdk::StatusCode::kUnsupported, "inert test scan");
  }
};

}  // namespace fixture_plugins
