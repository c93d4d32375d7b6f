#pragma once
// All parameters of a model, each a named slice of one block: an f32 block, and for inference
// with half-precision weights (hold_as()) a 16-bit block beside it, or with int8 weights
// (quantize()) the linear weights as sdk::QuantizedMatrix beside it. Components declare
// parameters by name; a name declared twice (a tied LM head and the embedding) is one tensor.

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mambakit/sdk/quantized.hpp"
#include "mambakit/sdk/tensor_spec.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::model {

struct ParameterEntry {
  std::string name;
  std::vector<std::int64_t> shape;
  sdk::Init init;
  bool weight_decay = true;
  bool linear_weight = false;           ///< a component declared it ParamSpec::linear_weight
  sdk::DType dtype = sdk::DType::kF32;  ///< f32, or f16 / bf16 after hold_as(), or kQ8 after quantize()
  std::int64_t offset = 0;              ///< in elements from the start of its dtype's block; kQ8: its matrix's index
  std::int64_t numel = 0;
};

class ParameterStore {
 public:
  /// Declares a parameter (before allocate()); returns its index. A second declaration of the
  /// same name returns the first one's index after checking that the shapes agree; `owner`
  /// names the declaring component in errors.
  int declare(const std::string& name, const sdk::ParamSpec& spec, const std::string& owner);

  /// Allocates the block (zeroed). Call once, after every declare().
  void allocate();

  /// Fills every parameter by its Init rule, each from its own generator seeded by `seed` and
  /// its index; leaves those declared InitKind::kComponent to their component.
  void initialize(std::uint64_t seed);

  /// Holds every parameter except those in `keep_f32` as `dtype` (f16 or bf16, rounded to
  /// nearest even; f32 leaves everything as it is). For inference: gradients need f32.
  void hold_as(sdk::DType dtype, const std::vector<int>& keep_f32);
  /// Holds the parameters in `indices` (2-D) as int8 with one scale per `group_size` inputs
  /// (sdk/quantized.hpp: sdk::quantize_row), the others as f32. For inference.
  /// `progress(done, total)` is called after each matrix, in elements.
  void quantize(const std::vector<int>& indices, std::int64_t group_size,
                const std::function<void(std::int64_t, std::int64_t)>& progress = {});
  /// Sets int8 parameter `index` from stored values: `values` (rows x cols, dense) and `scales`
  /// (rows x groups).
  void assign_quantized(int index, const std::int8_t* values, const float* scales);
  /// The int8 matrix of parameter `index` (held as kQ8).
  [[nodiscard]] const sdk::QuantizedMatrix& quantized(int index) const;
  /// The group size of the int8 parameters (0 unless quantize() ran).
  [[nodiscard]] std::int64_t quant_group_size() const { return quant_group_size_; }
  /// The dtype the converted parameters are held in (f32 unless hold_as() or quantize() changed
  /// it).
  [[nodiscard]] sdk::DType weights_dtype() const { return weights_dtype_; }

  [[nodiscard]] const std::vector<ParameterEntry>& entries() const { return entries_; }
  [[nodiscard]] const ParameterEntry* find(const std::string& name) const;
  /// The values of an f32 parameter; throws naming it when it is held in 16 bits.
  [[nodiscard]] float* data(int index) { return block_.data() + f32_entry(index).offset; }
  [[nodiscard]] const float* data(int index) const { return block_.data() + f32_entry(index).offset; }
  /// A view of parameter `index` in the dtype it is held in.
  [[nodiscard]] sdk::TensorView view(int index) const;
  /// Parameter `index` as f32 values, whatever it is held in.
  [[nodiscard]] std::vector<float> values_f32(int index) const;
  /// Sets parameter `index` from `count` = numel f32 values (rounded when held in 16 bits).
  void assign(int index, const float* values);
  /// Bytes the parameters occupy.
  [[nodiscard]] std::size_t bytes() const;
  /// The f32 block and the 16-bit block (empty unless hold_as() converted parameters), in
  /// which each entry's offset counts elements; for a device copy of the parameters.
  [[nodiscard]] const std::vector<float>& f32_block() const { return block_; }
  [[nodiscard]] const std::vector<std::uint16_t>& half_block() const { return halves_; }

  /// Allocates the gradient block (zeroed) when it does not exist yet; throws when the
  /// parameters are held in 16 bits.
  void ensure_gradients();
  void zero_gradients();
  [[nodiscard]] bool has_gradients() const { return !gradients_.empty(); }
  /// The whole gradient block, laid out like f32_block() (empty before ensure_gradients()).
  [[nodiscard]] std::vector<float>& gradient_block() { return gradients_; }
  [[nodiscard]] float* gradient(int index) { return gradients_.data() + entries_[static_cast<std::size_t>(index)].offset; }
  [[nodiscard]] const float* gradient(int index) const {
    return gradients_.data() + entries_[static_cast<std::size_t>(index)].offset;
  }
  [[nodiscard]] sdk::TensorView gradient_view(int index) const;

 private:
  const ParameterEntry& f32_entry(int index) const;

  std::vector<ParameterEntry> entries_;
  std::unordered_map<std::string, int> by_name_;
  std::vector<float> block_;
  std::vector<std::uint16_t> halves_;
  std::vector<std::int8_t> int8_values_;
  std::vector<float> int8_scales_;
  std::vector<sdk::QuantizedMatrix> quantized_;
  std::int64_t quant_group_size_ = 0;
  sdk::DType weights_dtype_ = sdk::DType::kF32;
  std::vector<float> gradients_;
};

/// The seed of stream `stream` (a parameter's index, a component's position) of a model seeded
/// with `model_seed`.
std::uint64_t component_seed(std::uint64_t model_seed, std::uint64_t stream);

/// "(a, b, c)".
std::string format_shape(const std::vector<std::int64_t>& shape);

}  // namespace mambakit::model
