// Sampling rules against hand-derived cases and the softmax distribution.

#include <catch2/catch.hpp>
#include <cmath>
#include <map>

#include "mambakit/error.hpp"
#include "mambakit/generation.hpp"

using mambakit::SamplingOptions;
using Catch::Matchers::Contains;

namespace {

std::map<std::int32_t, double> frequencies(const std::vector<float>& logits, const SamplingOptions& options, int draws) {
  std::mt19937_64 rng(options.seed);
  std::map<std::int32_t, double> counts;
  for (int i = 0; i < draws; ++i) {
    auto copy = logits;
    counts[mambakit::sample_token(copy, {}, options, rng)] += 1.0 / draws;
  }
  return counts;
}

}  // namespace

TEST_CASE("temperature 0 is greedy, ties going to the lowest id") {
  SamplingOptions options;
  options.temperature = 0.0;
  std::mt19937_64 rng(1);
  std::vector<float> logits{0.5f, 2.0f, -1.0f, 2.0f};
  CHECK(mambakit::sample_token(logits, {}, options, rng) == 1);
}

TEST_CASE("samples follow softmax(logits / T)") {
  SamplingOptions options;
  options.temperature = 2.0;
  options.seed = 42;
  const std::vector<float> logits{0.0f, std::log(2.0f) * 2, std::log(3.0f) * 2};  // softmax at T=2: 1:2:3
  const auto counts = frequencies(logits, options, 60000);
  CHECK(counts.at(0) == Approx(1.0 / 6).margin(0.01));
  CHECK(counts.at(1) == Approx(2.0 / 6).margin(0.01));
  CHECK(counts.at(2) == Approx(3.0 / 6).margin(0.01));
}

TEST_CASE("top-k, top-p and min-p keep exactly the tokens they should") {
  // probabilities 0.1, 0.2, 0.3, 0.4 at T = 1
  const std::vector<float> logits{std::log(0.1f), std::log(0.2f), std::log(0.3f), std::log(0.4f)};
  SamplingOptions options;
  options.seed = 3;
  options.top_k = 2;
  auto counts = frequencies(logits, options, 40000);
  CHECK(counts.count(0) == 0);
  CHECK(counts.count(1) == 0);
  CHECK(counts.at(3) == Approx(4.0 / 7).margin(0.01));

  options.top_k = 0;
  options.top_p = 0.65;  // 0.4 + 0.3 reaches it
  counts = frequencies(logits, options, 40000);
  CHECK(counts.size() == 2);
  CHECK(counts.at(2) == Approx(3.0 / 7).margin(0.01));

  options.top_p = 1.0;
  options.min_p = 0.45;  // keep p >= 0.18: 0.4, 0.3 and 0.2
  counts = frequencies(logits, options, 40000);
  CHECK(counts.size() == 3);
  CHECK(counts.count(0) == 0);
  CHECK(counts.at(1) == Approx(2.0 / 9).margin(0.01));
}

TEST_CASE("the repetition penalty divides positive and multiplies negative logits of seen tokens") {
  SamplingOptions options;
  options.temperature = 0.0;
  options.repetition_penalty = 2.0;
  std::mt19937_64 rng(1);
  std::vector<float> logits{3.0f, 2.0f, -1.0f};
  CHECK(mambakit::sample_token(logits, {0, 2}, options, rng) == 1);
  CHECK(logits[0] == 1.5f);
  CHECK(logits[2] == -2.0f);
}

TEST_CASE("the same seed gives the same draws") {
  SamplingOptions options;
  options.seed = 99;
  std::mt19937_64 a(options.seed), b(options.seed);
  const std::vector<float> logits{0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
  for (int i = 0; i < 50; ++i) {
    auto x = logits, y = logits;
    CHECK(mambakit::sample_token(x, {}, options, a) == mambakit::sample_token(y, {}, options, b));
  }
}

TEST_CASE("out-of-range sampling options are errors naming the option") {
  SamplingOptions options;
  options.temperature = -1;
  CHECK_THROWS_WITH(mambakit::validate(options), Contains("temperature") && Contains("-1"));
  options = {};
  options.top_p = 0;
  CHECK_THROWS_WITH(mambakit::validate(options), Contains("top_p"));
  options = {};
  options.min_p = 1.5;
  CHECK_THROWS_WITH(mambakit::validate(options), Contains("min_p"));
  options = {};
  options.repetition_penalty = 0;
  CHECK_THROWS_WITH(mambakit::validate(options), Contains("repetition_penalty"));
  options = {};
  options.top_k = -2;
  CHECK_THROWS_WITH(mambakit::validate(options), Contains("top_k"));
}
