// What int8 weights change in a model's outputs: a randomly initialised model of the 130m shape
// (Mamba-1, 24 layers, d_model 768, tied 50280-token vocabulary; or the mamba2-130m shape)
// decodes 256 greedy tokens after a 32-token prompt with f32 weights, then the same model
// with bf16 and int8 weights (groups of 32, 64, 128) decodes the f32 model's tokens (teacher
// forcing) and greedily on its own. Reports per dtype: the logits' relative error against f32
// (L2 norm of the difference over L2 norm of f32's, median and worst over the steps) and the
// greedy tokens' agreement (equal positions, and the first position that differs).
//
//   int8_quality [mamba1|mamba2] [THREADS]

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mambakit/model.hpp"
#include "mambakit/plugin_host.hpp"

namespace {

constexpr int kPrompt = 32, kSteps = 256;

std::int32_t argmax(const std::vector<float>& row) {
  return static_cast<std::int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

/// Logits of each step along `forced` (teacher forcing), and the model's own greedy tokens.
struct Run {
  std::vector<std::vector<float>> logits;
  std::vector<std::int32_t> greedy;
};

Run run(mambakit::Model& model, const std::vector<std::int32_t>& prompt, const std::vector<std::int32_t>& forced) {
  Run result;
  for (const bool teacher : {true, false}) {
    auto state = model.make_state(1);
    mambakit::TokenBatch batch{1, kPrompt, prompt};
    auto logits = model.forward(batch, &state, true).values;
    for (int step = 0; step < kSteps; ++step) {
      const std::int32_t next = argmax(logits);
      if (teacher) {
        result.logits.push_back(logits);
      } else {
        result.greedy.push_back(next);
      }
      const std::int32_t fed = teacher && !forced.empty() ? forced[static_cast<std::size_t>(step)] : next;
      logits = model.step({fed}, state).values;
    }
  }
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string family = argc > 1 ? argv[1] : "mamba1";
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  mambakit::PluginHost host;
  host.load_directory(mambakit::PluginHost::default_plugin_dir());
  mambakit::ModelConfig config;
  config.mixer = {family == "mamba2" ? "mamba2" : "s6", "{}"};
  config.head = {"lm", "{}"};
  config.d_model = 768;
  config.n_layer = 24;
  config.vocab_size = family == "mamba2" ? 50288 : 50280;
  std::vector<std::int32_t> prompt;
  for (int i = 0; i < kPrompt; ++i) prompt.push_back((i * 7919 + 13) % 50000);

  auto make = [&](mambakit::sdk::DType dtype, std::int64_t group_size) {
    mambakit::ModelOptions options;
    options.seed = 1;
    options.n_threads = threads;
    options.weights_dtype = dtype;
    options.int8_group_size = group_size;
    return mambakit::Model::create(config, host, options);
  };
  auto f32_model = make(mambakit::sdk::DType::kF32, 0);
  const Run reference = run(f32_model, prompt, {});
  std::printf("%s-130m shape, random weights (seed 1), %d-token prompt, %d greedy steps\n", family.c_str(), kPrompt,
              kSteps);
  std::printf("%-10s %22s %22s %18s %16s\n", "weights", "logits rel. err median", "logits rel. err worst",
              "greedy agreement", "first mismatch");
  struct Case {
    const char* name;
    mambakit::sdk::DType dtype;
    std::int64_t group_size;
  };
  for (const Case c : {Case{"bf16", mambakit::sdk::DType::kBF16, 0}, Case{"int8 g32", mambakit::sdk::DType::kQ8, 32},
                       Case{"int8 g64", mambakit::sdk::DType::kQ8, 64}, Case{"int8 g128", mambakit::sdk::DType::kQ8, 128}}) {
    auto model = make(c.dtype, c.group_size);
    const Run other = run(model, prompt, reference.greedy);
    std::vector<double> errors;
    for (int step = 0; step < kSteps; ++step) {
      const auto& a = other.logits[static_cast<std::size_t>(step)];
      const auto& b = reference.logits[static_cast<std::size_t>(step)];
      double difference = 0.0, norm = 0.0;
      for (std::size_t v = 0; v < a.size(); ++v) {
        difference += (double{a[v]} - b[v]) * (double{a[v]} - b[v]);
        norm += double{b[v]} * b[v];
      }
      errors.push_back(std::sqrt(difference / norm));
    }
    std::sort(errors.begin(), errors.end());
    int equal = 0, first = -1;
    for (int step = 0; step < kSteps; ++step) {
      const bool same = other.greedy[static_cast<std::size_t>(step)] == reference.greedy[static_cast<std::size_t>(step)];
      equal += same ? 1 : 0;
      if (!same && first < 0) first = step;
    }
    std::printf("%-10s %22.2e %22.2e %13d/%d %16s\n", c.name, errors[errors.size() / 2], errors.back(), equal, kSteps,
                first < 0 ? "none" : std::to_string(first).c_str());
  }
  return 0;
}
