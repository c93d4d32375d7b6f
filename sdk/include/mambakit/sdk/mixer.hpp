#pragma once
/// \file
/// Mixer: the sequence-mixing layer of a block (`h = x + mixer(rmsnorm(x))`).
///
/// Dimension legend: B batch, L length, D d_model.
/// A mixer declares its parameters, its recurrent state and the activations it saves for the
/// backward pass; the host allocates all of them and passes views in declared order.
///
/// Element types. The host holds a layer's parameters in one dtype that the mixer supports
/// (MixerCapabilities::param_dtypes; the declared ParamSpec dtype is the f32 default):
///   - f32, f16 or bf16 parameters: the residual stream (x, y), the state, the saved
///     activations and every gradient are f32, and arithmetic accumulates in f32. backward()
///     requires f32 parameters (training keeps f32 master weights).
///   - f64 parameters: forward() and backward() run entirely in f64 (a double-precision run,
///     used by gradient checks); step() may refuse them (decode runs in f32).
/// Every view the host passes to a mixer is contiguous (row-major).
///
/// State that grows (ABI 2.3). Most state has a size independent of the sequence length (a
/// conv window, an SSM state). A state tensor may instead hold one entry per token along one
/// axis (an attention layer's KV cache): state_token_axis() names that axis. The host then
/// allocates room for a capacity of tokens on that axis, grows it (keeping what is held) before
/// a call that needs more, and passes views whose extent on that axis is the capacity; the
/// `positions` of each call say how many tokens each row holds. The host saves and restores
/// the held part, and reports the bytes per token (InferenceState::info_json()). A model whose
/// mixers declare no such state keeps its memory constant in the sequence length. In forward,
/// the host passes such a tensor as both initial_state and final_state (the same view: the held
/// part stays in place and forward writes the new tokens after it), so that a long context is
/// not copied per call; a mixer must also accept the two as separate tensors.

#include <cstdint>

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/status.hpp"
#include "mambakit/sdk/tensor_spec.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::sdk {

/// What a mixer instance can do.
struct MixerCapabilities {
  std::uint32_t struct_size = sizeof(MixerCapabilities);
  std::uint32_t devices = 0;       ///< mask of device_bit(DeviceType)
  std::uint32_t param_dtypes = 0;  ///< mask of dtype_bit(DType) its parameters may have
  bool backward = false;           ///< implements backward()
  bool step = false;               ///< implements step()
};

/// Arguments of a forward pass over whole sequences.
struct MixerForwardArgs {
  std::uint32_t struct_size = sizeof(MixerForwardArgs);
  const TensorView* params = nullptr;         ///< in, param_count() views in declared order
  TensorView x;                               ///< in  (B, L, D) f32 (f64 with f64 parameters)
  TensorView y;                               ///< out (B, L, D), overwritten
  const TensorView* initial_state = nullptr;  ///< in, state_count() views, or nullptr for zero state
  const TensorView* final_state = nullptr;    ///< out, state_count() views written, or nullptr
  /// out, saved_count() views for backward(), or nullptr when no backward follows (inference).
  const TensorView* saved = nullptr;
  /// ABI 2.3. in (B) i64: the tokens each row's state held before this call, i.e. the position
  /// of the row's first token here; rows may differ (a ragged batch that was prefilled row by
  /// row). Absent (data == nullptr): 0 for every row. With initial_state == nullptr it is 0.
  /// The host passes it on the CPU (a host-memory view); on other devices, in this version, it
  /// is absent, and a mixer that needs it declares no such device.
  TensorView positions;
};

/// Arguments of a backward pass. Every gradient output accumulates (+=); an absent view in
/// grad_params (data == nullptr) marks a frozen parameter whose gradient is not wanted.
struct MixerBackwardArgs {
  std::uint32_t struct_size = sizeof(MixerBackwardArgs);
  const TensorView* params = nullptr;              ///< in, as in forward
  TensorView x;                                    ///< in  (B, L, D), the forward input
  const TensorView* initial_state = nullptr;       ///< in, as in forward
  const TensorView* saved = nullptr;               ///< in, what forward wrote into its saved views
  TensorView grad_y;                               ///< in  (B, L, D)
  const TensorView* grad_final_state = nullptr;    ///< in, state_count() views, or nullptr for zero
  TensorView grad_x;                               ///< out (B, L, D) +=
  const TensorView* grad_params = nullptr;         ///< out, param_count() views (the parameters' dtype) +=
  const TensorView* grad_initial_state = nullptr;  ///< out, state_count() views +=, or nullptr
  /// ABI 2.3. in (B) i64, as in forward; absent: 0 for every row.
  TensorView positions;
};

/// Arguments of one decode step: one new token per row, state updated in place.
struct MixerStepArgs {
  std::uint32_t struct_size = sizeof(MixerStepArgs);
  const TensorView* params = nullptr;  ///< in, as in forward
  TensorView x;                        ///< in  (B, D) f32
  TensorView y;                        ///< out (B, D), overwritten
  const TensorView* state = nullptr;   ///< in/out, state_count() views: the state before the token in,
                                       ///< after it out
  /// ABI 2.3. in (B) i64: the tokens each row's state holds before this one (the new token's
  /// position). Absent (data == nullptr) from hosts before ABI 2.3.
  TensorView positions;
};

/// A mixer layer instance, created by a plugin factory from a JSON config (see registrar.hpp).
/// Owned by the host, which deletes it through the virtual destructor before unloading its
/// plugin. The declaration methods are thread-safe; forward, backward and step may run
/// concurrently on different arguments (a mixer keeps no per-call state in members).
/// Append-only: new virtual functions go after the last one, with an ABI minor bump.
class Mixer {
 public:
  virtual ~Mixer() = default;

  /// Fills `out` with what this instance supports. Never fails.
  virtual void capabilities(MixerCapabilities* out) const noexcept = 0;

  /// Number of parameter tensors.
  virtual std::int32_t param_count() const noexcept = 0;
  /// Declaration of parameter `index` (0 <= index < param_count()), written to `out`.
  virtual Status param_spec(std::int32_t index, ParamSpec* out) const noexcept = 0;

  /// Number of recurrent state tensors (e.g. conv state and SSM state).
  virtual std::int32_t state_count() const noexcept = 0;
  /// Declaration of state tensor `index` for `batch` rows, written to `out`. The size does not
  /// depend on the sequence length, except along the token axis of a state that grows
  /// (state_token_axis()), where the declared extent is 1: one token's entry.
  virtual Status state_spec(std::int32_t index, std::int64_t batch, TensorSpec* out) const noexcept = 0;

  /// Number of activation tensors forward() saves for backward().
  virtual std::int32_t saved_count() const noexcept = 0;
  /// Declaration of saved tensor `index` for a (batch, length) input, written to `out`.
  virtual Status saved_spec(std::int32_t index, std::int64_t batch, std::int64_t length,
                            TensorSpec* out) const noexcept = 0;

  /// Forward over whole sequences, from the initial state; writes the final state when asked.
  virtual Status forward(const Context& context, const MixerForwardArgs& args) noexcept = 0;
  /// Backward of forward() with the same inputs (see MixerBackwardArgs).
  virtual Status backward(const Context& context, const MixerBackwardArgs& args) noexcept = 0;
  /// One token per row, equal to forward() on the sequence so far, position by position.
  virtual Status step(const Context& context, const MixerStepArgs& args) noexcept = 0;

  /// ABI 2.1. Fills the parameters declared InitKind::kComponent (see InitArgs). The host calls
  /// it once after creating a model without a checkpoint, only on plugins built for minor 1 or
  /// later; a mixer that declares no such parameter may leave the default, which does nothing.
  virtual Status initialize(const InitArgs& args) noexcept {
    (void)args;
    return Status::success();
  }

  /// ABI 2.3. The axis of state tensor `index` that holds one entry per token (0 < axis <
  /// rank: axis 0 is the batch), or -1 (the default) for a state whose size does not depend on
  /// the length. See "State that grows" above; a mixer with such a state needs `positions`.
  virtual std::int32_t state_token_axis(std::int32_t index) const noexcept {
    (void)index;
    return -1;
  }
};

}  // namespace mambakit::sdk
