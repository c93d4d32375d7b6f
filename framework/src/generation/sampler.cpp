// Choosing the next token from logits: repetition penalty, temperature, top-k, top-p, min-p.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include "mambakit/error.hpp"
#include "mambakit/generation.hpp"

namespace mambakit {

void validate(const SamplingOptions& options) {
  if (!(options.temperature >= 0.0) || !std::isfinite(options.temperature)) {
    throw Error(fmt::format("temperature must be a finite number >= 0, got {}", options.temperature));
  }
  if (options.top_k < 0) throw Error(fmt::format("top_k must be >= 0, got {}", options.top_k));
  if (!(options.top_p > 0.0 && options.top_p <= 1.0)) {
    throw Error(fmt::format("top_p must be in (0, 1], got {}", options.top_p));
  }
  if (!(options.min_p >= 0.0 && options.min_p <= 1.0)) {
    throw Error(fmt::format("min_p must be in [0, 1], got {}", options.min_p));
  }
  if (!(options.repetition_penalty > 0.0) || !std::isfinite(options.repetition_penalty)) {
    throw Error(fmt::format("repetition_penalty must be a finite number > 0, got {}", options.repetition_penalty));
  }
}

std::int32_t sample_token(std::vector<float>& logits, const std::vector<std::int32_t>& history,
                          const SamplingOptions& options, std::mt19937_64& rng) {
  const std::int64_t vocab = static_cast<std::int64_t>(logits.size());
  if (options.repetition_penalty != 1.0) {
    std::unordered_set<std::int32_t> seen(history.begin(), history.end());
    for (std::int32_t id : seen) {
      if (id < 0 || id >= vocab) continue;
      float& logit = logits[static_cast<std::size_t>(id)];
      logit = logit > 0 ? static_cast<float>(logit / options.repetition_penalty)
                        : static_cast<float>(logit * options.repetition_penalty);
    }
  }
  if (options.temperature == 0.0) {
    return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  // Candidates sorted by logit, highest first (ties by id), so every filter keeps a prefix.
  std::vector<std::int32_t> order(static_cast<std::size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::int64_t keep = vocab;
  if (options.top_k > 0) keep = std::min(keep, options.top_k);
  auto by_logit = [&](std::int32_t a, std::int32_t b) {
    return logits[static_cast<std::size_t>(a)] > logits[static_cast<std::size_t>(b)] ||
           (logits[static_cast<std::size_t>(a)] == logits[static_cast<std::size_t>(b)] && a < b);
  };
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), by_logit);
  order.resize(static_cast<std::size_t>(keep));

  std::vector<double> probability(order.size());
  const double top = logits[static_cast<std::size_t>(order.front())] / options.temperature;
  double total = 0.0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    probability[i] = std::exp(logits[static_cast<std::size_t>(order[i])] / options.temperature - top);
    total += probability[i];
  }
  for (auto& p : probability) p /= total;
  std::size_t kept = probability.size();
  if (options.top_p < 1.0) {
    double cumulative = 0.0;
    for (std::size_t i = 0; i < probability.size(); ++i) {
      cumulative += probability[i];
      if (cumulative >= options.top_p) {
        kept = i + 1;
        break;
      }
    }
  }
  if (options.min_p > 0.0) {
    const double floor = options.min_p * probability.front();
    std::size_t above = 1;
    while (above < kept && probability[above] >= floor) ++above;
    kept = above;
  }
  double mass = 0.0;
  for (std::size_t i = 0; i < kept; ++i) mass += probability[i];
  const double draw = std::uniform_real_distribution<double>(0.0, mass)(rng);
  double cumulative = 0.0;
  for (std::size_t i = 0; i < kept; ++i) {
    cumulative += probability[i];
    if (draw < cumulative) return order[i];
  }
  return order[kept - 1];
}

}  // namespace mambakit
