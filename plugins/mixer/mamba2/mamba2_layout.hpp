#pragma once
// The Mamba-2 mixer's dimensions and parameter order, read from its JSON options.
//
// Dimensions: D d_model, E d_inner = expand * D = H * P, H heads, P head_dim, G groups,
// N d_state, K d_conv, C conv_dim = E + 2 G N (the conv runs over x | B | C),
// I d_in_proj = 2 E + 2 G N + H (in_proj's output: z | x | B | C | dt).

#include <cstdint>
#include <limits>

namespace mambakit::mixer_mamba2 {

struct Mamba2Dims {
  std::int64_t d_model = 0, d_inner = 0, heads = 0, head_dim = 0, groups = 1, d_state = 0, d_conv = 0,
               n_layer = 1;
  bool conv_bias = true, bias = false;
  double norm_eps = 1e-5;
  double dt_limit_min = 0.0, dt_limit_max = std::numeric_limits<double>::infinity();
  double dt_min = 0.001, dt_max = 0.1, dt_init_floor = 1e-4, a_init_min = 1.0, a_init_max = 16.0;

  [[nodiscard]] std::int64_t conv_dim() const { return d_inner + 2 * groups * d_state; }
  [[nodiscard]] std::int64_t d_in_proj() const { return 2 * d_inner + 2 * groups * d_state + heads; }
  /// Column offsets in in_proj's output.
  [[nodiscard]] std::int64_t xbc_offset() const { return d_inner; }
  [[nodiscard]] std::int64_t dt_offset() const { return d_inner + conv_dim(); }
  /// Channels per norm group.
  [[nodiscard]] std::int64_t group_size() const { return d_inner / groups; }
};

/// Position of each parameter in the declared order; optional ones are -1 when absent.
struct Mamba2ParamIndex {
  int in_proj_weight = -1, in_proj_bias = -1, conv_weight = -1, conv_bias = -1, dt_bias = -1, a_log = -1, d = -1,
      norm_weight = -1, out_proj_weight = -1, out_proj_bias = -1;
  int count = 0;

  explicit Mamba2ParamIndex(const Mamba2Dims& dims) {
    in_proj_weight = count++;
    if (dims.bias) in_proj_bias = count++;
    conv_weight = count++;
    if (dims.conv_bias) conv_bias = count++;
    dt_bias = count++;
    a_log = count++;
    d = count++;
    norm_weight = count++;
    out_proj_weight = count++;
    if (dims.bias) out_proj_bias = count++;
  }
};

/// Order of the recurrent state tensors: conv (B, C, K), the last K conv inputs, oldest first;
/// ssm (B, H, P, N).
enum Mamba2State : int { kConvState = 0, kSsmState = 1, kStateCount = 2 };

/// Order of the activations forward() saves for backward(), each (B, L, width):
///   zxbcdt (I)  in_proj's output
///   y      (E)  the SSD scan's output, before the gated norm
/// Backward recomputes the rest, all cheap: the conv and its SiLU, dt, and the gated norm.
enum Mamba2Saved : int { kSavedZxbcdt = 0, kSavedY = 1, kSavedCount = 2 };

}  // namespace mambakit::mixer_mamba2
