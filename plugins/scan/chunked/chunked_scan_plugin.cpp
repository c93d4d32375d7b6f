// scan/chunked: the selective scan parallel over time within chunks (see
// chunked_scan_kernels.hpp), f32 and f64, forward, backward and step, on the CPU. `auto`
// prefers it over scan/fused only where time is the only parallelism: few rows times channel
// blocks for the threads, and a long sequence.
//
// Config (JSON object): {"chunk_length": K} fixes the chunk length (steps, >= 1); without it
// the length is chosen per call.

#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "chunked_scan_kernels.hpp"
#include "mambakit/sdk/plugin.hpp"
#include "mambakit/sdk/scan_backend.hpp"

namespace mambakit::scan_chunked {

namespace {

/// The value of the integer key `key` in the flat JSON object `json`, or 0 when the key is
/// absent. Throws std::invalid_argument when the value is not a positive integer.
std::int64_t integer_key(const char* json, const char* key) {
  if (json == nullptr) return 0;
  const std::string quoted = std::string("\"") + key + "\"";
  const char* found = std::strstr(json, quoted.c_str());
  if (found == nullptr) return 0;
  const char* p = found + quoted.size();
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') ++p;
  if (*p != ':') throw std::invalid_argument("scan/chunked: config key \"" + std::string(key) + "\" has no value");
  ++p;
  char* end = nullptr;
  const long long value = std::strtoll(p, &end, 10);
  if (end == p || value < 1 || (*end != ',' && *end != '}' && *end != ' ' && *end != '\n' && *end != '\r')) {
    throw std::invalid_argument("scan/chunked: config key \"" + std::string(key) +
                                "\" must be a positive integer, got " + std::string(p).substr(0, 32));
  }
  return value;
}

}  // namespace

class ChunkedScan final : public sdk::ScanBackend {
 public:
  explicit ChunkedScan(const char* config_json) : chunk_length_(integer_key(config_json, "chunk_length")) {}

  void capabilities(sdk::ScanCapabilities* out) const noexcept override {
    out->devices = sdk::device_bit(sdk::DeviceType::kCpu);
    out->dtypes = sdk::dtype_bit(sdk::DType::kF32) | sdk::dtype_bit(sdk::DType::kF64);
    out->max_d_state = scan_cpu::kMaxDState;
    out->backward = true;
    out->step = true;
  }

  /// 50 (below scan/fused's 100, above scan/sequential's 1) in general; 150 for f32 problems
  /// long enough for chunks to pay where scan/fused would keep fewer than half the threads
  /// busy. scan/fused runs one (row, block of 16 channels) per thread (one block over all rows
  /// in the backward); scan/chunked does about twice its work (the chunk pass and the
  /// correction pass; measured 1.8 to 2.3 times scan/fused on one thread with bench/scan_bench),
  /// spread over every thread, so it is faster only when 2 * items < threads.
  std::int32_t score(const sdk::KernelProblem& problem) const noexcept override {
    const sdk::SelectiveScanShape shape = sdk::selective_scan_shape(problem);
    if (!shape.valid) return 0;
    const bool runs = problem.device.type == sdk::DeviceType::kCpu &&
                      (problem.dtype == sdk::DType::kF32 || problem.dtype == sdk::DType::kF64) &&
                      shape.d_state <= scan_cpu::kMaxDState;
    if (!runs) return 0;
    const std::int64_t blocks = (shape.d_inner + 15) / 16;
    const std::int64_t fused_items = problem.needs_backward ? blocks : shape.batch * blocks;
    const bool time_parallel_pays =
        problem.dtype == sdk::DType::kF32 && 2 * fused_items < omp_get_max_threads() && shape.length >= kLongSequence;
    return time_parallel_pays ? 150 : 50;
  }

  sdk::Status forward(const sdk::Context& context, const sdk::ScanForwardArgs& args) noexcept override {
    return sdk::guard([&] {
      const bool f64 = args.u.dtype == sdk::DType::kF64;
      scan_cpu::dispatch_d_state(args.A.shape[1], [&]<int kN>() {
        if (f64) {
          scan_chunked::forward<double, kN>(context, args, chunk_length_);
        } else {
          scan_chunked::forward<float, kN>(context, args, chunk_length_);
        }
      });
      return sdk::Status::success();
    });
  }

  sdk::Status backward(const sdk::Context& context, const sdk::ScanBackwardArgs& args) noexcept override {
    return sdk::guard([&] {
      const bool f64 = args.forward.u.dtype == sdk::DType::kF64;
      scan_cpu::dispatch_d_state(args.forward.A.shape[1], [&]<int kN>() {
        if (f64) {
          scan_chunked::backward<double, kN>(context, args, chunk_length_);
        } else {
          scan_chunked::backward<float, kN>(context, args, chunk_length_);
        }
      });
      return sdk::Status::success();
    });
  }

  sdk::Status step(const sdk::Context& context, const sdk::ScanStepArgs& args) noexcept override {
    return sdk::guard([&] {
      const bool f64 = args.u.dtype == sdk::DType::kF64;
      scan_cpu::dispatch_d_state(args.A.shape[1], [&]<int kN>() {
        if (f64) {
          scan_cpu::scan_step<double, kN>(context, args);
        } else {
          scan_cpu::scan_step<float, kN>(context, args);
        }
      });
      return sdk::Status::success();
    });
  }

 private:
  static constexpr std::int64_t kLongSequence = 4096;
  std::int64_t chunk_length_ = 0;
};

namespace {

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_kernel(sdk::kSelectiveScanKind, "chunked",
                            "parallel over time in chunks with the state carried between them (f32, f64; CPU)",
                            &sdk::create_component<sdk::Kernel, ChunkedScan>);
}

}  // namespace
}  // namespace mambakit::scan_chunked

MAMBAKIT_PLUGIN("scan-chunked", "0.1.0", mambakit::scan_chunked::register_components)
