// The host-side checks in sdk/scan_calls.hpp: bad arguments never reach a backend, and the
// message names the tensor and both shapes.

#include <catch2/catch.hpp>
#include <string>

#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/scan_calls.hpp"
#include "fixtures.hpp"
#include "scan_case.hpp"

using Catch::Matchers::Contains;
using mambakit::test::ScanCase;
using mambakit::test::ScanOptions;

namespace {

std::string forward_error(const mambakit::sdk::ScanForwardArgs& args) {
  static auto scan = mambakit::test::create_scan(mambakit::test::in_tree_plugins(), "sequential");
  mambakit::sdk::Context context;
  context.kernels = mambakit::test::fixed_kernels(scan.get());
  const auto status = mambakit::sdk::selective_scan_forward(context, args);
  return status.ok() ? std::string("ok") : std::string(status.message);
}

}  // namespace

TEST_CASE("scan arguments are validated before a backend runs") {
  ScanCase<float> problem(2, 6, 4, 3, ScanOptions{}, 1u);
  CHECK(forward_error(problem.forward_args()) == "ok");

  auto args = problem.forward_args();
  args.B.shape[2] = 5;
  CHECK_THAT(forward_error(args), Contains("scan B has shape (2, 6, 5) but (2, 6, 3) is expected"));

  args = problem.forward_args();
  args.delta.dtype = mambakit::sdk::DType::kF16;
  CHECK_THAT(forward_error(args), Contains("scan delta has dtype f16 but f32 is expected"));

  args = problem.forward_args();
  args.C.data = nullptr;
  CHECK_THAT(forward_error(args), Contains("scan C is missing"));

  args = problem.forward_args();
  args.z.strides[2] = 2;
  CHECK_THAT(forward_error(args), Contains("scan z has stride 2 in its last dimension"));

  args = problem.forward_args();
  args.y.device.type = mambakit::sdk::DeviceType::kCuda;
  CHECK_THAT(forward_error(args), Contains("scan y is on cuda:0"));

  mambakit::sdk::Context no_backend;
  CHECK_THAT(std::string(mambakit::sdk::selective_scan_forward(no_backend, problem.forward_args()).message),
             Contains("carries no kernel provider"));
}
