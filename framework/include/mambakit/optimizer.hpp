#pragma once
/// \file
/// AdamW with decoupled weight decay, global gradient-norm clipping, and the warmup + cosine
/// learning-rate schedule.

#include <cstdint>
#include <filesystem>
#include <vector>

#include "mambakit/model.hpp"

namespace mambakit {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;  ///< applied only to parameters declared with weight_decay
  double clip_norm = 1.0;     ///< clip the global gradient norm to this; 0 disables
};

/// Learning rate at `step` (0-based): linear warmup from 0 over `warmup` steps to `max_lr`,
/// then cosine decay to `min_lr` at `total` steps (and `min_lr` after).
double cosine_learning_rate(std::int64_t step, std::int64_t warmup, std::int64_t total, double max_lr, double min_lr);

class AdamW {
 public:
  /// Optimizes every parameter of `model`, which must outlive the optimizer.
  AdamW(Model& model, const AdamWOptions& options);

  /// Clips the gradients, updates the parameters with learning rate `lr`, and returns the
  /// gradient norm before clipping. Does not zero the gradients. A non-finite gradient norm is
  /// an Error, thrown before any parameter changes.
  double step(double lr);

  /// The global L2 norm of the model's gradients (in double), as step() computes it.
  [[nodiscard]] double gradient_norm() const;

  /// Steps taken so far.
  [[nodiscard]] std::int64_t steps() const { return steps_; }

  /// Writes the moments and the step count to a safetensors file (atomically); load() reads
  /// them back, checking that they fit the model.
  void save(const std::filesystem::path& file) const;
  void load(const std::filesystem::path& file);

 private:
  AdamWOptions options_;
  Model& model_;  // told of each step's writes (Model::parameters_changed)
  std::vector<ParameterSlice> slices_;
  std::vector<std::vector<float>> first_moment_, second_moment_;
  std::int64_t steps_ = 0;
};

}  // namespace mambakit
