// ssd/chunked: the SSD scan in its chunked matrix form (ssd_chunked_math.hpp): forward and
// backward as small GEMMs per (row, head, chunk), threads over (row, head) pairs; the
// one-token step is the shared recurrence (ssd_common.hpp). f32 and f64, CPU.

#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/plugin.hpp"
#include "ssd_chunked_math.hpp"

namespace mambakit::ssd_chunked {

namespace {

class ChunkedSsd final : public sdk::SsdKernel {
 public:
  explicit ChunkedSsd(const char* /*config_json*/) {}

  std::int32_t score(const sdk::KernelProblem& problem) const noexcept override {
    return ssd_common::cpu_score(problem, 10);
  }

  sdk::Status forward(const sdk::Context& context, const sdk::SsdForwardArgs& args) noexcept override {
    return sdk::guard([&] {
      if (args.x.dtype == sdk::DType::kF64) {
        chunked_forward<double>(context, args);
      } else {
        chunked_forward<float>(context, args);
      }
      return sdk::Status::success();
    });
  }

  sdk::Status backward(const sdk::Context& context, const sdk::SsdBackwardArgs& args) noexcept override {
    return sdk::guard([&] {
      if (args.forward.x.dtype == sdk::DType::kF64) {
        chunked_backward<double>(context, args);
      } else {
        chunked_backward<float>(context, args);
      }
      return sdk::Status::success();
    });
  }

  sdk::Status step(const sdk::Context& context, const sdk::SsdStepArgs& args) noexcept override {
    return sdk::guard([&] {
      if (args.x.dtype == sdk::DType::kF64) {
        ssd_common::step<double>(args, context.n_threads);
      } else {
        ssd_common::step<float>(args, context.n_threads);
      }
      return sdk::Status::success();
    });
  }
};

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_kernel(sdk::kSsdKind, "chunked",
                              "SSD scan (Mamba-2) in chunked matrix form: GEMMs within chunks, states between (f32, "
                              "f64; CPU)",
                              &sdk::create_component<sdk::Kernel, ChunkedSsd>);
}

}  // namespace
}  // namespace mambakit::ssd_chunked

MAMBAKIT_PLUGIN("ssd-chunked", "0.1.0", mambakit::ssd_chunked::register_components)
