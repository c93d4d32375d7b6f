// Every scan backend against the PyTorch reference's standalone scan cases (outputs, final
// states and, where a backend has a backward pass, every gradient).

#include <catch2/catch.hpp>
#include <cmath>
#include <fmt/format.h>

#include "fixtures.hpp"
#include "mambakit/safetensors.hpp"
#include "mambakit/sdk/scan_calls.hpp"

namespace sdk = mambakit::sdk;
using mambakit::test::max_abs_difference;

namespace {

struct LoadedScanCase {
  std::map<std::string, std::vector<float>> values;
  std::map<std::string, std::vector<std::int64_t>> shapes;
  bool softplus = true;

  explicit LoadedScanCase(const mambakit::SafetensorsFile& file) {
    for (const auto& entry : file.entries()) {
      values[entry.name] = file.read_f32(entry.name);
      shapes[entry.name] = entry.shape;
    }
    softplus = file.metadata().at("delta_softplus") == "1";
  }

  sdk::TensorView view(const std::string& name) {
    auto found = values.find(name);
    if (found == values.end()) return {};
    const auto& shape = shapes.at(name);
    sdk::TensorView v = sdk::make_view(found->second.data(), sdk::DType::kF32, sdk::Device{}, shape.data(),
                                       static_cast<std::int32_t>(shape.size()));
    return v;
  }

  std::vector<float> zeros_like(const std::string& name) { return std::vector<float>(values.at(name).size(), 0.0f); }
};

double relative_error(const std::vector<float>& actual, const std::vector<float>& reference) {
  double scale = 0.0;
  for (float v : reference) scale = std::max(scale, static_cast<double>(std::abs(v)));
  return max_abs_difference(actual, reference) / std::max(scale, 1e-30);
}

}  // namespace

TEST_CASE("every scan backend matches the reference scan fixtures") {
  const auto& host = mambakit::test::in_tree_plugins();
  for (const char* case_name : {"full", "bare", "no_softplus", "long"}) {
    const auto file = mambakit::SafetensorsFile::open(mambakit::test::data_dir() / "scan" /
                                                      fmt::format("{}.safetensors", case_name));
    for (const auto& scan_name : mambakit::test::scan_names(host)) {
      auto scan = mambakit::test::create_scan(host, scan_name);
      LoadedScanCase data(file);
      const sdk::KernelProblem problem =
          sdk::selective_scan_problem(sdk::Device{}, sdk::DType::kF32, data.shapes.at("u")[0], data.shapes.at("u")[1],
                                      data.shapes.at("u")[2], data.shapes.at("A")[1]);
      if (scan->score(problem) == 0) continue;
      INFO("scan/" << scan_name << " on case " << case_name);
      std::vector<float> y = data.zeros_like("y"), final_state = data.zeros_like("final_state");
      sdk::ScanForwardArgs args;
      args.u = data.view("u");
      args.delta = data.view("delta");
      args.A = data.view("A");
      args.B = data.view("B");
      args.C = data.view("C");
      args.D = data.view("D");
      args.z = data.view("z");
      args.delta_bias = data.view("delta_bias");
      args.delta_softplus = data.softplus;
      args.initial_state = data.view("initial_state");
      args.y = data.view("y");
      args.y.data = y.data();
      args.final_state = data.view("final_state");
      args.final_state.data = final_state.data();
      sdk::Context context;
      context.kernels = mambakit::test::fixed_kernels(scan.get());
      const auto status = sdk::selective_scan_forward(context, args);
      REQUIRE(status.ok());
      CHECK(relative_error(y, data.values.at("y")) < 1e-5);
      CHECK(relative_error(final_state, data.values.at("final_state")) < 1e-5);

      sdk::ScanCapabilities capabilities;
      scan->capabilities(&capabilities);
      if (!capabilities.backward) continue;
      std::map<std::string, std::vector<float>> grads;
      sdk::ScanBackwardArgs backward;
      backward.forward = args;
      backward.grad_y = data.view("grad_y");
      backward.grad_final_state = data.view("grad_final_state");
      auto grad_view = [&](const char* input) {
        if (!data.values.count(input)) return sdk::TensorView{};
        const std::string name = std::string("grad_") + input;
        grads[name] = data.zeros_like(input);
        sdk::TensorView v = data.view(input);
        v.data = grads[name].data();
        return v;
      };
      backward.grad_u = grad_view("u");
      backward.grad_delta = grad_view("delta");
      backward.grad_A = grad_view("A");
      backward.grad_B = grad_view("B");
      backward.grad_C = grad_view("C");
      backward.grad_D = grad_view("D");
      backward.grad_z = grad_view("z");
      backward.grad_delta_bias = grad_view("delta_bias");
      backward.grad_initial_state = grad_view("initial_state");
      REQUIRE(sdk::selective_scan_backward(context, backward).ok());
      for (const auto& [name, values] : grads) {
        INFO(name);
        CHECK(relative_error(values, data.values.at(name)) < 1e-4);
      }
    }
  }
}
