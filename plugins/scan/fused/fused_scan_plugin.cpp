// scan/fused: the fast CPU selective scan (see fused_scan_kernels.hpp), f32, forward,
// backward and step. `auto` prefers it on the CPU for f32 problems.

#include <cstdint>

#include "fused_scan_kernels.hpp"
#include "mambakit/sdk/plugin.hpp"
#include "mambakit/sdk/scan_backend.hpp"

namespace mambakit::scan_fused {

class FusedScan final : public sdk::ScanBackend {
 public:
  explicit FusedScan(const char* /*config_json*/) {}

  void capabilities(sdk::ScanCapabilities* out) const noexcept override {
    out->devices = sdk::device_bit(sdk::DeviceType::kCpu);
    out->dtypes = sdk::dtype_bit(sdk::DType::kF32);
    out->max_d_state = scan_cpu::kMaxDState;
    out->backward = true;
    out->step = true;
  }

  std::int32_t score(const sdk::KernelProblem& problem) const noexcept override {
    const sdk::SelectiveScanShape shape = sdk::selective_scan_shape(problem);
    if (!shape.valid) return 0;
    const bool runs = problem.device.type == sdk::DeviceType::kCpu && problem.dtype == sdk::DType::kF32 &&
                      shape.d_state <= scan_cpu::kMaxDState;
    return runs ? kScore : 0;
  }

  sdk::Status forward(const sdk::Context& context, const sdk::ScanForwardArgs& args) noexcept override {
    return sdk::guard([&] {
      scan_cpu::dispatch_d_state(args.A.shape[1], [&]<int kN>() { scan_fused::forward<kN>(context, args); });
      return sdk::Status::success();
    });
  }

  sdk::Status backward(const sdk::Context& context, const sdk::ScanBackwardArgs& args) noexcept override {
    return sdk::guard([&] {
      scan_cpu::dispatch_d_state(args.forward.A.shape[1],
                                 [&]<int kN>() { scan_fused::backward<kN>(context, args); });
      return sdk::Status::success();
    });
  }

  sdk::Status step(const sdk::Context& context, const sdk::ScanStepArgs& args) noexcept override {
    return sdk::guard([&] {
      scan_cpu::dispatch_d_state(args.A.shape[1], [&]<int kN>() { scan_cpu::scan_step<float, kN>(context, args); });
      return sdk::Status::success();
    });
  }

 private:
  static constexpr std::int32_t kScore = 100;
};

namespace {

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_kernel(sdk::kSelectiveScanKind, "fused",
                            "fast CPU scan: SIMD over channels, states in registers, fused gate (f32; CPU)",
                            &sdk::create_component<sdk::Kernel, FusedScan>);
}

}  // namespace
}  // namespace mambakit::scan_fused

MAMBAKIT_PLUGIN("scan-fused", "0.1.0", mambakit::scan_fused::register_components)
