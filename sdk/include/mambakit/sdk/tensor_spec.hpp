#pragma once
/// \file
/// TensorSpec and ParamSpec: how a component declares the tensors it needs the host to own.

#include <cstdint>
#include <initializer_list>

#include "mambakit/sdk/dtype.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::sdk {

/// Longest tensor name a spec can hold, including the terminating zero.
inline constexpr std::int32_t kMaxNameLength = 128;

/// Declaration of a tensor the host allocates: a name, a shape and an element type.
/// Plain data; the name is copied into the spec, so it outlives the declaring plugin.
struct TensorSpec {
  char name[kMaxNameLength] = {};
  DType dtype = DType::kF32;
  std::int32_t rank = 0;
  std::int64_t shape[kMaxRank] = {};

  /// Number of elements.
  [[nodiscard]] std::int64_t numel() const noexcept {
    std::int64_t count = 1;
    for (std::int32_t d = 0; d < rank; ++d) count *= shape[d];
    return count;
  }
};

/// How a parameter is filled when a model is created without a checkpoint: by the host from a
/// generator seeded per component (the first five kinds), or by the component (kComponent).
/// Values are stable (append only).
enum class InitKind : std::int32_t {
  kZeros = 0,
  kOnes = 1,
  kConstant = 2,  ///< every element = a
  kUniform = 3,   ///< U(a, b)
  kNormal = 4,    ///< N(mean a, standard deviation b)
  /// The component fills it itself in its initialize() (mixer.hpp, head.hpp), for rules that
  /// are its own (e.g. Mamba's A_log and dt bias).
  kComponent = 5,
};

/// Initialisation rule of a parameter: a kind and up to three numbers whose meaning the kind
/// gives.
struct Init {
  InitKind kind = InitKind::kZeros;
  double a = 0.0;
  double b = 0.0;
  double c = 0.0;
};

/// Declaration of a trainable parameter.
/// `tensor.name` is the Hugging Face checkpoint name relative to the component's prefix (for a
/// mixer of layer i the host prepends "backbone.layers.{i}.mixer."); a name that starts with
/// '/' is absolute (the '/' is dropped), which is how a tied LM head asks for
/// "/backbone.embeddings.weight" and shares it with the embedding.
struct ParamSpec {
  TensorSpec tensor;
  Init init;
  /// Whether AdamW applies weight decay to it (false for A_log, D, norms and biases).
  bool weight_decay = true;
  /// An (out, in) matrix that the component only multiplies as y = x W^T, through sdk::util's
  /// linear_forward of TypedParams::linear() (whole sequences) and linear_few_rows (decode),
  /// which accept every dtype the host may hold it in. A quantized model holds exactly these as DType::kQ8 (int8
  /// with scales, quantized.hpp); the other parameters stay f32. Read by hosts from ABI 2.2.
  bool linear_weight = false;
};

/// Arguments of Mixer::initialize() and Head::initialize(): the parameters to fill, and a seed.
struct InitArgs {
  std::uint32_t struct_size = sizeof(InitArgs);
  /// in/out, param_count() views in declared order, f32 or f64. Those declared
  /// InitKind::kComponent are to be written; the others already hold the host's values.
  const TensorView* params = nullptr;
  /// This component's seed, derived by the host from the model's seed and the component's
  /// position; use it with sdk::Generator (random.hpp) so that a seed gives one model.
  std::uint64_t seed = 0;
};

/// Fills `spec` with a name (truncated to kMaxNameLength-1 bytes), dtype and shape.
inline void set_tensor_spec(TensorSpec& spec, const char* name, DType dtype,
                            std::initializer_list<std::int64_t> shape) noexcept {
  std::int32_t i = 0;
  for (; name[i] != '\0' && i < kMaxNameLength - 1; ++i) spec.name[i] = name[i];
  spec.name[i] = '\0';
  spec.dtype = dtype;
  spec.rank = static_cast<std::int32_t>(shape.size() > kMaxRank ? kMaxRank : shape.size());
  std::int32_t d = 0;
  for (std::int64_t extent : shape) {
    if (d == spec.rank) break;
    spec.shape[d++] = extent;
  }
}

}  // namespace mambakit::sdk
