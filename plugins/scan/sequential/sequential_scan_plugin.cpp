// scan/sequential: the reference selective scan (see sequential_scan_math.hpp), for f32 and
// f64, forward, backward and step, on the CPU. Slow and obviously right; `auto` picks it only
// when nothing faster can run.

#include "mambakit/sdk/plugin.hpp"
#include "mambakit/sdk/scan_backend.hpp"
#include "sequential_scan_math.hpp"

namespace mambakit::scan_sequential {

class SequentialScan final : public sdk::ScanBackend {
 public:
  explicit SequentialScan(const char* /*config_json*/) {}

  void capabilities(sdk::ScanCapabilities* out) const noexcept override {
    out->devices = sdk::device_bit(sdk::DeviceType::kCpu);
    out->dtypes = sdk::dtype_bit(sdk::DType::kF32) | sdk::dtype_bit(sdk::DType::kF64);
    out->max_d_state = std::int64_t{1} << 20;
    out->backward = true;
    out->step = true;
  }

  std::int32_t score(const sdk::KernelProblem& problem) const noexcept override {
    const sdk::SelectiveScanShape shape = sdk::selective_scan_shape(problem);
    if (!shape.valid) return 0;
    const bool runs = problem.device.type == sdk::DeviceType::kCpu &&
                      (problem.dtype == sdk::DType::kF32 || problem.dtype == sdk::DType::kF64);
    return runs ? 1 : 0;
  }

  sdk::Status forward(const sdk::Context&, const sdk::ScanForwardArgs& args) noexcept override {
    return sdk::guard([&] {
      if (args.u.dtype == sdk::DType::kF64) {
        scan_forward<double>(args);
      } else {
        scan_forward<float>(args);
      }
      return sdk::Status::success();
    });
  }

  sdk::Status backward(const sdk::Context&, const sdk::ScanBackwardArgs& args) noexcept override {
    return sdk::guard([&] {
      if (args.forward.u.dtype == sdk::DType::kF64) {
        scan_backward<double>(args);
      } else {
        scan_backward<float>(args);
      }
      return sdk::Status::success();
    });
  }

  sdk::Status step(const sdk::Context&, const sdk::ScanStepArgs& args) noexcept override {
    return sdk::guard([&] {
      if (args.u.dtype == sdk::DType::kF64) {
        scan_step<double>(args);
      } else {
        scan_step<float>(args);
      }
      return sdk::Status::success();
    });
  }
};

namespace {

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_kernel(sdk::kSelectiveScanKind, "sequential", "reference selective scan, one step at a time (f32, f64; CPU)",
                            &sdk::create_component<sdk::Kernel, SequentialScan>);
}

}  // namespace
}  // namespace mambakit::scan_sequential

MAMBAKIT_PLUGIN("scan-sequential", "0.1.0", mambakit::scan_sequential::register_components)
