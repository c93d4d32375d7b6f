#pragma once
// The S6 (Mamba-1) mixer's dimensions and parameter order, read from its JSON config.
//
// Dimensions: D d_model, E d_inner = expand * D, N d_state, R dt_rank, K d_conv.

#include <cstdint>

namespace mambakit::mixer_s6 {

struct S6Dims {
  std::int64_t d_model = 0, d_inner = 0, d_state = 0, d_conv = 0, dt_rank = 0, n_layer = 1;
  bool conv_bias = true, bias = false;
  double dt_min = 0.001, dt_max = 0.1, dt_init_floor = 1e-4, dt_scale = 1.0;
  bool dt_init_random = true;

  /// Width of x_proj's output: dt_low | B | C.
  [[nodiscard]] std::int64_t dbc_width() const { return dt_rank + 2 * d_state; }
};

/// Position of each parameter in the declared order; optional ones are -1 when absent.
struct S6ParamIndex {
  int in_proj_weight = -1, in_proj_bias = -1, conv_weight = -1, conv_bias = -1, x_proj_weight = -1,
      dt_proj_weight = -1, dt_proj_bias = -1, a_log = -1, d = -1, out_proj_weight = -1, out_proj_bias = -1;
  int count = 0;

  explicit S6ParamIndex(const S6Dims& dims) {
    in_proj_weight = count++;
    if (dims.bias) in_proj_bias = count++;
    conv_weight = count++;
    if (dims.conv_bias) conv_bias = count++;
    x_proj_weight = count++;
    dt_proj_weight = count++;
    dt_proj_bias = count++;
    a_log = count++;
    d = count++;
    out_proj_weight = count++;
    if (dims.bias) out_proj_bias = count++;
  }
};

/// Order of the recurrent state tensors.
enum S6State : int { kConvState = 0, kSsmState = 1, kStateCount = 2 };

/// Order of the activations forward() saves for backward(), each (B, L, width):
///   xz  (2E)       in_proj's output (x half | z half)
///   dbc (R + 2N)   x_proj's output (dt_low | B | C)
///   y   (E)        the gated scan output, out_proj's input
/// Backward recomputes the rest, which is cheap: the conv and its SiLU (K MACs per element),
/// dt = dt_proj(dt_low) (R MACs per element) and A. The scan's own internals are recomputed by
/// the scan backend's backward.
enum S6Saved : int { kSavedXz = 0, kSavedDbc = 1, kSavedY = 2, kSavedCount = 3 };

}  // namespace mambakit::mixer_s6
