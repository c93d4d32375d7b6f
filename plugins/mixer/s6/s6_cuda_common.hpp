#pragma once
// Host-side helpers shared by mixer/s6's CUDA forward, step and backward: parameters as
// DeviceParams and the scan's f32 per-channel inputs (device views of workspace buffers are
// s6_views.hpp's, given the device).
// Host code of CUDA builds only.
//
// Dimensions: B batch, L length, E d_inner, N d_state.

#include <cuda_runtime_api.h>

#include <cstdint>
#include <initializer_list>

#include "mambakit/sdk/util/cuda_status.hpp"
#include "linear_launch.hpp"
#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/scan_calls.hpp"
#include "mambakit/sdk/tensor_view.hpp"
#include "mambakit/sdk/workspace.hpp"
#include "s6_cuda_launch.hpp"
#include "s6_layout.hpp"
#include "s6_views.hpp"

namespace mambakit::mixer_s6 {

inline constexpr const char* kCudaComponent = "mixer/s6";

/// Parameter `index` of `params`, absent for an absent optional parameter (index -1).
inline DeviceParam device_param(const sdk::TensorView* params, int index) {
  return index < 0 ? DeviceParam{} : cuda_common::device_param(params[index]);
}

/// The conv + SiLU of a (B, L) pass over the x half of xz (B, L, 2E) into out (B, L, E), with
/// the layer's conv weight and bias; the states are left to the caller. Forward and backward
/// (which recomputes the conv) both take it from here, so they cannot drift apart.
inline ConvArgs conv_args(const sdk::TensorView* params, const S6ParamIndex& index, const S6Dims& dims,
                          const float* xz, float* out, std::int64_t B, std::int64_t L) {
  ConvArgs conv;
  conv.input = xz;
  conv.input_row_stride = 2 * dims.d_inner;
  conv.weight = device_param(params, index.conv_weight);
  conv.bias = device_param(params, index.conv_bias);
  conv.out = out;
  conv.batch = B;
  conv.length = L;
  conv.d_inner = dims.d_inner;
  conv.d_conv = dims.d_conv;
  return conv;
}

/// The scan's A (E, N) = -exp(A_log), D (E) and delta_bias (E) as f32 device views: A in
/// workspace, D and the dt bias in place when f32, widened into workspace otherwise.
class ScanParams {
 public:
  ScanParams(const sdk::Context& context, const sdk::TensorView* params, const S6Dims& dims, const S6ParamIndex& index)
      : params_(params), index_(index), dims_(dims), device_(context.device),
        a_(context, dims.d_inner * dims.d_state),
        d_(context, widened(params, index.d) ? dims.d_inner : 0),
        dt_bias_(context, widened(params, index.dt_proj_bias) ? dims.d_inner : 0) {}

  /// Enqueues the kernel that fills the workspace parts.
  [[nodiscard]] sdk::Status enqueue(cudaStream_t stream) const {
    ScanParamArgs args;
    args.a_log = device_param(params_, index_.a_log);
    args.a = a_.data();
    args.d = device_param(params_, index_.d);
    args.d_f32 = d_.data();
    args.dt_bias = device_param(params_, index_.dt_proj_bias);
    args.dt_bias_f32 = dt_bias_.data();
    args.d_inner = dims_.d_inner;
    args.d_state = dims_.d_state;
    MAMBAKIT_CUDA_CHECK(kCudaComponent, launch_scan_params(args, stream));
    return sdk::Status::success();
  }

  /// The scan's inputs for a (B, L) pass: u = xc and delta = dt (B, L, E), B and C from dbc
  /// (B, L, W), z the z half of xz (B, L, 2E), and A, D and delta_bias; y and the states are
  /// left to the caller. Forward and backward both take them from here.
  [[nodiscard]] sdk::ScanForwardArgs inputs(const float* xc, const float* dt, const float* dbc, const float* xz,
                                            std::int64_t B, std::int64_t L) const {
    const std::int64_t E = dims_.d_inner, N = dims_.d_state, R = dims_.dt_rank, W = dims_.dbc_width();
    sdk::ScanForwardArgs scan;
    scan.u = typed_view(xc, {B, L, E}, device_);
    scan.delta = typed_view(dt, {B, L, E}, device_);
    scan.A = A();
    scan.B = strided_view(dbc + R, B, L, N, W, device_);
    scan.C = strided_view(dbc + R + N, B, L, N, W, device_);
    scan.D = D();
    scan.z = strided_view(xz + E, B, L, E, 2 * E, device_);
    scan.delta_bias = delta_bias();
    scan.delta_softplus = true;
    return scan;
  }

  [[nodiscard]] sdk::TensorView A() const {
    return typed_view(a_.data(), {dims_.d_inner, dims_.d_state}, device_);
  }
  [[nodiscard]] sdk::TensorView D() const { return f32_view(index_.d, d_.data()); }
  [[nodiscard]] sdk::TensorView delta_bias() const { return f32_view(index_.dt_proj_bias, dt_bias_.data()); }

 private:
  static bool widened(const sdk::TensorView* params, int index) {
    return index >= 0 && params[index].dtype != sdk::DType::kF32;
  }
  /// Parameter `index` (E) as f32: itself, or its widened copy `copy`; absent for index -1.
  sdk::TensorView f32_view(int index, const float* copy) const {
    if (index < 0) return sdk::TensorView{};
    const float* data = widened(params_, index) ? copy : params_[index].as<const float>();
    return typed_view(data, {dims_.d_inner}, device_);
  }

  const sdk::TensorView* params_;
  S6ParamIndex index_;
  S6Dims dims_;
  sdk::Device device_;
  sdk::WorkspaceArray<float> a_, d_, dt_bias_;
};

}  // namespace mambakit::mixer_s6
