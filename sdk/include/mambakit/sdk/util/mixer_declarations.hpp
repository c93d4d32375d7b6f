#pragma once
// What the in-tree mixers write alike when they declare themselves: a parameter's spec in one
// call, PyTorch's uniform initialisation of linear and conv weights, the capabilities of a mixer
// that runs on the CPU, and the Status for a call on a device it did not declare.

#include <cstdint>
#include <initializer_list>

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/dtype.hpp"
#include "mambakit/sdk/mixer.hpp"
#include "mambakit/sdk/status.hpp"
#include "mambakit/sdk/tensor_spec.hpp"

namespace mambakit::sdk::util {

/// Declares into `*out` the f32 parameter `name` (copied; see set_tensor_spec) of `shape`,
/// initialised by `init`, with AdamW's weight decay when `weight_decay`. The other fields of
/// `*out` (linear_weight) are left as they are.
inline void declare_param(sdk::ParamSpec* out, const char* name, std::initializer_list<std::int64_t> shape,
                          sdk::Init init, bool weight_decay) noexcept {
  sdk::set_tensor_spec(out->tensor, name, sdk::DType::kF32, shape);
  out->init = init;
  out->weight_decay = weight_decay;
}

/// U(-bound, bound): nn.Linear's and nn.Conv1d's initialisation with bound = 1/sqrt(fan_in).
inline sdk::Init uniform_init(double bound) noexcept { return {sdk::InitKind::kUniform, -bound, bound}; }

/// Writes into `*out` the capabilities of a mixer that runs on the CPU only, with backward and
/// step, and parameters in f32, f64, f16, bf16 or int8 (kQ8). A mixer with more devices adds
/// them to out->devices afterwards.
inline void set_cpu_mixer_capabilities(sdk::MixerCapabilities* out) noexcept {
  out->devices = sdk::device_bit(sdk::DeviceType::kCpu);
  out->param_dtypes = sdk::dtype_bit(sdk::DType::kF32) | sdk::dtype_bit(sdk::DType::kF64) |
                      sdk::dtype_bit(sdk::DType::kF16) | sdk::dtype_bit(sdk::DType::kBF16) |
                      sdk::dtype_bit(sdk::DType::kQ8);
  out->backward = true;
  out->step = true;
}

/// kUnsupported, "`component` runs on the CPU only, not on <device> tensors": the answer of a
/// CPU-only component to a call on `context`'s device when that is not the CPU.
inline sdk::Status cpu_only_error(const char* component, const sdk::Context& context) noexcept {
  return sdk::Status::error(sdk::StatusCode::kUnsupported, "%s runs on the CPU only, not on %s tensors", component,
                            sdk::device_type_name(context.device.type));
}

}  // namespace mambakit::sdk::util
