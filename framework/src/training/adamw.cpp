#include <fmt/format.h>

#include <cmath>
#include <numbers>

#include "mambakit/error.hpp"
#include "mambakit/optimizer.hpp"
#include "mambakit/safetensors.hpp"

namespace mambakit {

double cosine_learning_rate(std::int64_t step, std::int64_t warmup, std::int64_t total, double max_lr, double min_lr) {
  if (step < warmup) return max_lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (step >= total) return min_lr;
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max<std::int64_t>(total - warmup, 1));
  return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + std::cos(std::numbers::pi * progress));
}

AdamW::AdamW(Model& model, const AdamWOptions& options)
    : options_(options), model_(model), slices_(model.parameter_slices()) {
  for (const auto& slice : slices_) {
    first_moment_.emplace_back(static_cast<std::size_t>(slice.numel), 0.0f);
    second_moment_.emplace_back(static_cast<std::size_t>(slice.numel), 0.0f);
  }
}

double AdamW::gradient_norm() const {
  double sum_squares = 0.0;
  for (const auto& slice : slices_) {
    for (std::int64_t i = 0; i < slice.numel; ++i) sum_squares += static_cast<double>(slice.gradients[i]) * slice.gradients[i];
  }
  return std::sqrt(sum_squares);
}

double AdamW::step(double lr) {
  const double norm = gradient_norm();
  if (!std::isfinite(norm)) throw Error(fmt::format("the gradient norm is {} at optimizer step {}", norm, steps_ + 1));
  const double clip = options_.clip_norm > 0 && norm > options_.clip_norm ? options_.clip_norm / norm : 1.0;
  ++steps_;
  const double correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  const float beta1 = static_cast<float>(options_.beta1), beta2 = static_cast<float>(options_.beta2);
  for (std::size_t p = 0; p < slices_.size(); ++p) {
    const auto& slice = slices_[p];
    float* m = first_moment_[p].data();
    float* v = second_moment_[p].data();
    const float decay = slice.weight_decay ? static_cast<float>(1.0 - lr * options_.weight_decay) : 1.0f;
    const float step_size = static_cast<float>(lr / correction1);
    const float inv_correction2 = static_cast<float>(1.0 / correction2);
    const float eps = static_cast<float>(options_.eps);
    for (std::int64_t i = 0; i < slice.numel; ++i) {
      const float g = static_cast<float>(slice.gradients[i] * clip);
      m[i] = beta1 * m[i] + (1.0f - beta1) * g;
      v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
      slice.values[i] = slice.values[i] * decay - step_size * m[i] / (std::sqrt(v[i] * inv_correction2) + eps);
    }
  }
  model_.parameters_changed();
  return norm;
}

void AdamW::save(const std::filesystem::path& file) const {
  std::vector<SafetensorsTensor> tensors;
  for (std::size_t p = 0; p < slices_.size(); ++p) {
    tensors.push_back({"exp_avg." + slices_[p].name, sdk::DType::kF32, {slices_[p].numel}, first_moment_[p].data()});
    tensors.push_back({"exp_avg_sq." + slices_[p].name, sdk::DType::kF32, {slices_[p].numel}, second_moment_[p].data()});
  }
  write_safetensors(file, tensors, {{"optimizer", "adamw"}, {"steps", std::to_string(steps_)}});
}

void AdamW::load(const std::filesystem::path& file) {
  const SafetensorsFile stored = SafetensorsFile::open(file);
  const auto& metadata = stored.metadata();
  if (!metadata.count("steps") || metadata.count("optimizer") == 0 || metadata.at("optimizer") != "adamw") {
    throw Error(fmt::format("{}: not an AdamW state (metadata optimizer/steps missing)", file.string()));
  }
  for (std::size_t p = 0; p < slices_.size(); ++p) {
    for (auto* target : {&first_moment_[p], &second_moment_[p]}) {
      const std::string name = (target == &first_moment_[p] ? "exp_avg." : "exp_avg_sq.") + slices_[p].name;
      const auto& entry = stored.at(name);
      if (entry.numel() != slices_[p].numel) {
        throw Error(fmt::format("{}: {} holds {} values but the parameter has {}", file.string(), name, entry.numel(),
                                slices_[p].numel));
      }
      stored.read_f32(entry, target->data());
    }
  }
  steps_ = std::stoll(metadata.at("steps"));
}

}  // namespace mambakit
