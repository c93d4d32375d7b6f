#pragma once
/// \file
/// Head: maps the final hidden states of a model to its task's output (logits, class scores,
/// features).
///
/// Dimension legend: B batch, L length, D d_model.
///
/// Element types follow the mixer's rules (mixer.hpp): with f32, f16 or bf16 parameters the
/// hidden states, the output and every gradient are f32 (f32 accumulation), and backward()
/// requires f32 parameters; with f64 parameters everything is f64.

#include <cstdint>

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/status.hpp"
#include "mambakit/sdk/tensor_spec.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::sdk {

/// The training objective a head's output serves; the host computes the loss from it.
/// Values are stable (append only).
enum class HeadObjective : std::int32_t {
  /// None: the output is features (embeddings); such a model is not trained on its own.
  kNone = 0,
  /// Next-token prediction: output (B, L, V) logits; the loss is the mean cross-entropy of
  /// position t's logits against token t + 1, within each row's length.
  kNextToken = 1,
  /// Classification: output (B, C) scores; the loss is the mean cross-entropy against one label
  /// per row (class_name() may name the classes).
  kClassLabels = 2,
};

/// What a head instance can do.
struct HeadCapabilities {
  std::uint32_t struct_size = sizeof(HeadCapabilities);
  std::uint32_t devices = 0;       ///< mask of device_bit(DeviceType)
  std::uint32_t param_dtypes = 0;  ///< mask of dtype_bit(DType) its parameters may have
  bool backward = false;           ///< implements backward()
  HeadObjective objective = HeadObjective::kNone;  ///< what its output is trained for
  /// Rate in [0, 1) of the inverted dropout the host applies, in training only, to the hidden
  /// states this head sees (the same mask in forward and backward).
  double input_dropout = 0.0;
};

/// Arguments of a head's forward pass.
struct HeadForwardArgs {
  std::uint32_t struct_size = sizeof(HeadForwardArgs);
  const TensorView* params = nullptr;  ///< in, param_count() views in declared order
  TensorView hidden;                   ///< in  (B, L, D), after the final norm
  /// in  (B) i32, optional: valid tokens per row (rows are right-padded); absent means L for all.
  TensorView lengths;
  TensorView output;                   ///< out, shaped as output_spec(B, L), overwritten
};

/// Arguments of a head's backward pass. Gradient outputs accumulate (+=); an absent view in
/// grad_params marks a frozen parameter.
struct HeadBackwardArgs {
  std::uint32_t struct_size = sizeof(HeadBackwardArgs);
  const TensorView* params = nullptr;       ///< in, as in forward
  TensorView hidden;                        ///< in  (B, L, D)
  TensorView lengths;                       ///< in, as in forward
  TensorView grad_output;                   ///< in, shaped as output_spec(B, L)
  TensorView grad_hidden;                   ///< out (B, L, D) +=
  const TensorView* grad_params = nullptr;  ///< out, param_count() views (the parameters' dtype) +=
};

/// A head instance, created by a plugin factory from a JSON config (see registrar.hpp). Owned
/// by the host, deleted through the virtual destructor before its plugin is unloaded.
/// Thread-safety as for Mixer. Append-only.
class Head {
 public:
  virtual ~Head() = default;

  /// Fills `out` with what this instance supports. Never fails.
  virtual void capabilities(HeadCapabilities* out) const noexcept = 0;

  /// Number of parameter tensors.
  virtual std::int32_t param_count() const noexcept = 0;
  /// Declaration of parameter `index`; names are relative to the model root (e.g.
  /// "lm_head.weight", or "/backbone.embeddings.weight" to share the embedding: see ParamSpec).
  virtual Status param_spec(std::int32_t index, ParamSpec* out) const noexcept = 0;

  /// Shape of the output for a (batch, length) input, written to `out` (dtype f32; f64 in a
  /// double-precision run).
  virtual Status output_spec(std::int64_t batch, std::int64_t length, TensorSpec* out) const noexcept = 0;

  /// Computes the output from the hidden states.
  virtual Status forward(const Context& context, const HeadForwardArgs& args) noexcept = 0;
  /// Backward of forward() (see HeadBackwardArgs).
  virtual Status backward(const Context& context, const HeadBackwardArgs& args) noexcept = 0;

  /// ABI 2.1. As Mixer::initialize(): fills the parameters declared InitKind::kComponent.
  virtual Status initialize(const InitArgs& args) noexcept {
    (void)args;
    return Status::success();
  }

  /// ABI 2.1. The name of output class `index` (objective kClassLabels), copied into `out`
  /// (`capacity` bytes, zero-terminated, truncated); an empty name means the class has none
  /// (it is known by its index). The default names none.
  virtual Status class_name(std::int32_t index, char* out, std::int32_t capacity) const noexcept {
    (void)index;
    if (capacity > 0) out[0] = '\0';
    return Status::success();
  }
};

}  // namespace mambakit::sdk
