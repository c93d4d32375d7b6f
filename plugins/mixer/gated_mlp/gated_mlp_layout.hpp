#pragma once
// The gated MLP's dimensions and parameter order, read from its JSON options.
//
// Dimensions: D d_model, F hidden = ceil(d_intermediate / multiple_of) * multiple_of
// (fc1's output is 2F wide: the value half a, then the gate half g).

#include <cstdint>

namespace mambakit::mixer_gated_mlp {

struct GatedMlpDims {
  std::int64_t d_model = 0, hidden = 0, n_layer = 1;
  bool bias = false;
};

/// Position of each parameter in the declared order; the biases are -1 when absent.
struct GatedMlpParamIndex {
  int fc1_weight = -1, fc1_bias = -1, fc2_weight = -1, fc2_bias = -1;
  int count = 0;

  explicit GatedMlpParamIndex(const GatedMlpDims& dims) {
    fc1_weight = count++;
    if (dims.bias) fc1_bias = count++;
    fc2_weight = count++;
    if (dims.bias) fc2_bias = count++;
  }
};

/// Order of the activations forward() saves for backward(): fc1's output h (B, L, 2F).
/// Backward recomputes the gated product a * silu(g) from it.
enum GatedMlpSaved : int { kSavedFc1 = 0, kSavedCount = 1 };

}  // namespace mambakit::mixer_gated_mlp
