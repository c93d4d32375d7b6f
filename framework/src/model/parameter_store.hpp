#pragma once
// All parameters of a model in one f32 block, each a named slice. Components declare
// parameters by name; a name declared twice (a tied LM head and the embedding) is one tensor.

#include <cstdint>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "mambakit/sdk/tensor_spec.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::model {

struct ParameterEntry {
  std::string name;
  std::vector<std::int64_t> shape;
  sdk::Init init;
  bool weight_decay = true;
  std::int64_t offset = 0;  ///< in floats from the block start
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

  /// Fills every parameter by its Init rule, in declaration order, from `seed`.
  void initialize(std::uint64_t seed);

  [[nodiscard]] const std::vector<ParameterEntry>& entries() const { return entries_; }
  [[nodiscard]] const ParameterEntry* find(const std::string& name) const;
  [[nodiscard]] float* data(int index) { return block_.data() + entries_[static_cast<std::size_t>(index)].offset; }
  [[nodiscard]] const float* data(int index) const {
    return block_.data() + entries_[static_cast<std::size_t>(index)].offset;
  }
  [[nodiscard]] sdk::TensorView view(int index) const;

  /// Allocates the gradient block (zeroed) when it does not exist yet.
  void ensure_gradients();
  void zero_gradients();
  [[nodiscard]] bool has_gradients() const { return !gradients_.empty(); }
  [[nodiscard]] float* gradient(int index) { return gradients_.data() + entries_[static_cast<std::size_t>(index)].offset; }
  [[nodiscard]] const float* gradient(int index) const {
    return gradients_.data() + entries_[static_cast<std::size_t>(index)].offset;
  }
  [[nodiscard]] sdk::TensorView gradient_view(int index) const;
  [[nodiscard]] std::int64_t total_numel() const { return static_cast<std::int64_t>(block_.size()); }

 private:
  std::vector<ParameterEntry> entries_;
  std::unordered_map<std::string, int> by_name_;
  std::vector<float> block_;
  std::vector<float> gradients_;
};

/// "(a, b, c)".
std::string format_shape(const std::vector<std::int64_t>& shape);

}  // namespace mambakit::model
