#include "training_objectives.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "mambakit/error.hpp"

namespace mambakit::model {

std::int64_t lm_target_count(std::int64_t batch, std::int64_t length, const std::vector<std::int32_t>& lengths) {
  std::int64_t count = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t valid = lengths.empty() ? length : std::min<std::int64_t>(lengths[static_cast<std::size_t>(b)], length);
    count += std::max<std::int64_t>(valid - 1, 0);
  }
  if (count == 0) {
    throw Error(fmt::format("a causal-LM batch of {} rows of {} tokens has no next-token target", batch, length));
  }
  return count;
}

double lm_cross_entropy(const float* logits, std::int64_t vocab, const TokenBatch& tokens, float* grad, int n_threads) {
  const std::vector<std::int32_t>& lengths = tokens.lengths;
  const std::int64_t B = tokens.batch, L = tokens.length, V = vocab;
  const std::int64_t count = lm_target_count(B, L, lengths);
  // Each position's loss is kept and the losses summed in position order afterwards (not by an
  // OpenMP reduction, whose per-thread partial sums would make the bits depend on the threads).
  std::vector<double> losses(static_cast<std::size_t>(B * L), 0.0);
#pragma omp parallel for num_threads(n_threads) collapse(2) schedule(static)
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t t = 0; t < L; ++t) {
      const std::int64_t valid = lengths.empty() ? L : std::min<std::int64_t>(lengths[static_cast<std::size_t>(b)], L);
      const float* row = logits + (b * L + t) * V;
      if (t + 1 >= valid) continue;
      const std::int32_t target = tokens.ids[static_cast<std::size_t>(b * L + t + 1)];
      float top = row[0];
      for (std::int64_t v = 1; v < V; ++v) top = std::max(top, row[v]);
      double sum = 0.0;
      for (std::int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v] - top));
      const double log_sum = std::log(sum) + top;
      losses[static_cast<std::size_t>(b * L + t)] = log_sum - row[target];
      if (grad == nullptr) continue;
      float* out = grad + (b * L + t) * V;
      for (std::int64_t v = 0; v < V; ++v) {
        out[v] = static_cast<float>(std::exp(row[v] - log_sum) / static_cast<double>(count));
      }
      out[target] -= static_cast<float>(1.0 / static_cast<double>(count));
    }
  }
  double total = 0.0;
  for (const double loss : losses) total += loss;
  return total / static_cast<double>(count);
}

double classification_cross_entropy(const FloatTensor& scores, const std::vector<std::int32_t>& labels, FloatTensor& grad) {
  const std::int64_t B = scores.shape[0], C = scores.shape[1];
  if (static_cast<std::int64_t>(labels.size()) != B) {
    throw Error(fmt::format("a classification batch of {} rows needs {} labels, got {}", B, B, labels.size()));
  }
  double total = 0.0;
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int32_t label = labels[static_cast<std::size_t>(b)];
    if (label < 0 || label >= C) throw Error(fmt::format("label {} of row {} is outside [0, {})", label, b, C));
    const float* row = scores.values.data() + b * C;
    double top = row[0];
    for (std::int64_t c = 1; c < C; ++c) top = std::max<double>(top, row[c]);
    double sum = 0.0;
    for (std::int64_t c = 0; c < C; ++c) sum += std::exp(row[c] - top);
    const double log_sum = std::log(sum) + top;
    total += log_sum - row[label];
    for (std::int64_t c = 0; c < C; ++c) {
      grad.values[static_cast<std::size_t>(b * C + c)] = static_cast<float>(std::exp(row[c] - log_sum) / B);
    }
    grad.values[static_cast<std::size_t>(b * C + label)] -= static_cast<float>(1.0 / B);
  }
  return total / static_cast<double>(B);
}

std::vector<float> dropout_mask(std::size_t count, double p, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution keep(1.0 - p);
  const auto scale = static_cast<float>(1.0 / (1.0 - p));
  std::vector<float> mask(count);
  for (std::size_t i = 0; i < count; ++i) mask[i] = keep(rng) ? scale : 0.0f;
  return mask;
}

}  // namespace mambakit::model
