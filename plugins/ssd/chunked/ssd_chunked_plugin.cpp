// ssd/chunked: the SSD scan in its chunked matrix form (ssd_chunked_math.hpp): forward and
// backward as small GEMMs per (row, head, chunk), threads over (row, head) pairs; the
// one-token step is the shared recurrence (ssd_common.hpp). f32 and f64, CPU.

#include "mambakit/sdk/plugin.hpp"
#include "ssd_chunked_math.hpp"

namespace mambakit::ssd_chunked {

namespace {

class ChunkedSsd final : public ssd_common::CpuSsdKernel {
 public:
  explicit ChunkedSsd(const char* /*config_json*/) : CpuSsdKernel(10) {}

  sdk::Status forward(const sdk::Context& context, const sdk::SsdForwardArgs& args) noexcept override {
    return ssd_common::by_dtype(args.x.dtype, [&](auto zero) { chunked_forward<decltype(zero)>(context, args); });
  }

  sdk::Status backward(const sdk::Context& context, const sdk::SsdBackwardArgs& args) noexcept override {
    return ssd_common::by_dtype(args.forward.x.dtype,
                                [&](auto zero) { chunked_backward<decltype(zero)>(context, args); });
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
