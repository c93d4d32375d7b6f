// Whole models on a CUDA device (ModelOptions::device = cuda), the CPU model as the oracle:
// forward logits and final states for every golden fixture (f32, f16 and bf16 weights) with
// and without state, prefill + decode steps, CUDA-graph replay against the uncaptured step
// (bit for bit), greedy and sampled generation, the state's host copy, the clear error for
// CPU-only components (head/classification among them); training: losses and accumulated gradients (LM,
// with and without recompute, per-row lengths, two micro-batches), host edits of the weights
// reaching the device, a few AdamW steps, and `mambakit train --device cuda`. GPU cases exit
// with 77 (skipped) where no device exists.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>

#include "cuda_test_support.hpp"
#include "fixtures.hpp"
#include "mambakit/error.hpp"
#include "mambakit/generation.hpp"
#include "mambakit/model.hpp"
#include "mambakit/optimizer.hpp"
#include "mambakit/safetensors.hpp"
#include "process.hpp"
#include "test_files.hpp"

using Catch::Matchers::Contains;
using mambakit::FloatTensor;
using mambakit::InferenceState;
using mambakit::Model;
using mambakit::ModelOptions;
using mambakit::TokenBatch;
using mambakit::test::kGpu;
using mambakit::test::max_abs_difference;
using mambakit::test::require_cuda_device;
using mambakit::test::slice;
namespace sdk = mambakit::sdk;

namespace {

ModelOptions on_gpu(bool graphs = true) {
  ModelOptions options;
  options.device = kGpu;
  options.cuda_graphs = graphs;
  return options;
}

/// Options with f32 weights (what training needs) on `device`.
ModelOptions f32_on(sdk::Device device) {
  ModelOptions options;
  options.weights_dtype = sdk::DType::kF32;
  options.device = device;
  return options;
}

double largest_magnitude(const std::vector<float>& values) {
  double largest = 0.0;
  for (float v : values) largest = std::max(largest, static_cast<double>(std::abs(v)));
  return largest;
}

/// |gpu - cpu| within 1e-4 of the largest |cpu| value (and the shapes equal).
void check_close(const FloatTensor& gpu, const FloatTensor& cpu, const std::string& what) {
  INFO(what);
  REQUIRE(gpu.shape == cpu.shape);
  const double error = max_abs_difference(gpu.values, cpu.values);
  const double bound = 1e-4 * std::max(1.0, largest_magnitude(cpu.values));
  INFO("max |gpu - cpu| " << error << ", bound " << bound);
  CHECK(error <= bound);
}

/// Every parameter's accumulated gradient within 1e-4 of its largest |cpu| value, or of 1e-3
/// of the largest over all parameters where that is more (near-zero gradients compare
/// absolutely: float sums in another order leave noise there).
void check_gradients(const Model& gpu, const Model& cpu, const std::string& what) {
  INFO(what);
  std::vector<std::vector<float>> expected;
  double overall = 0.0;
  for (const auto& parameter : cpu.parameters()) {
    expected.push_back(cpu.gradient_values(parameter.name));
    overall = std::max(overall, largest_magnitude(expected.back()));
  }
  REQUIRE(overall > 0.0);
  const auto parameters = cpu.parameters();
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    const double error = max_abs_difference(gpu.gradient_values(parameters[i].name), expected[i]);
    const double bound = 1e-4 * std::max(largest_magnitude(expected[i]), 1e-3 * overall);
    INFO(parameters[i].name << ": max |gpu - cpu| " << error << ", bound " << bound);
    CHECK(error <= bound);
  }
}

/// Every tensor of the two states within 1e-4 (absolute), and the same offset.
void check_states(const InferenceState& gpu, const InferenceState& cpu, const std::string& what) {
  INFO(what);
  REQUIRE(gpu.n_layers() == cpu.n_layers());
  CHECK(gpu.seqlen_offset() == cpu.seqlen_offset());
  for (std::int64_t layer = 0; layer < cpu.n_layers(); ++layer) {
    for (std::int64_t i = 0; i < cpu.tensor_count(layer); ++i) {
      INFO("layer " << layer << " " << cpu.tensor_name(layer, i));
      CHECK(max_abs_difference(gpu.tensor(layer, i).values, cpu.tensor(layer, i).values) <= 1e-4);
    }
  }
}

/// Each row's argmax (the greedy next token).
std::vector<std::int32_t> argmax_rows(const FloatTensor& logits) {
  const std::int64_t stride = logits.shape.back(), rows = logits.numel() / stride;
  std::vector<std::int32_t> ids;
  for (std::int64_t r = 0; r < rows; ++r) {
    const auto row = logits.values.begin() + r * stride;
    ids.push_back(static_cast<std::int32_t>(std::max_element(row, row + stride) - row));
  }
  return ids;
}

}  // namespace

TEST_CASE("a CUDA model's forward logits and final states match the CPU model's for every fixture", "[cuda]") {
  require_cuda_device();
  const auto& host = mambakit::test::in_tree_plugins();
  for (const auto& dir : mambakit::test::model_fixture_dirs_on(sdk::DeviceType::kCuda)) {
    const auto expected = mambakit::SafetensorsFile::open(dir / "expected.safetensors");
    Model cpu = Model::load(dir, host);
    Model gpu = Model::load(dir, host, on_gpu());
    REQUIRE(gpu.weights_dtype() == cpu.weights_dtype());
    for (const std::int64_t length : {1, 3, 7, 33}) {
      const std::string name = fmt::format("{} ({}), L={}", dir.filename().string(), sdk::dtype_name(cpu.weights_dtype()), length);
      const TokenBatch tokens = mambakit::test::fixture_tokens(expected, length);
      check_close(gpu.forward(tokens), cpu.forward(tokens), name + ", no state");
      check_close(gpu.forward(tokens, nullptr, true), cpu.forward(tokens, nullptr, true), name + ", last position");

      InferenceState cpu_state = cpu.make_state(tokens.batch), gpu_state = gpu.make_state(tokens.batch);
      check_close(gpu.forward(tokens, &gpu_state), cpu.forward(tokens, &cpu_state), name + ", with state");
      check_states(gpu_state, cpu_state, name + ", final state");
      // Continuing from the state (the initial-state path): the same tokens again.
      check_close(gpu.forward(tokens, &gpu_state, true), cpu.forward(tokens, &cpu_state, true), name + ", continued");
      check_states(gpu_state, cpu_state, name + ", continued state");
    }
    // A prompt in two chunks equals one pass on the device too.
    const TokenBatch whole = mambakit::test::fixture_tokens(expected, 33);
    InferenceState chunked = gpu.make_state(whole.batch);
    gpu.forward(slice(whole, 0, 20), &chunked);
    const FloatTensor second = gpu.forward(slice(whole, 20, 33), &chunked, true);
    InferenceState cpu_state = cpu.make_state(whole.batch);
    check_close(second, cpu.forward(whole, &cpu_state, true), dir.filename().string() + ", two chunks");
    check_states(chunked, cpu_state, dir.filename().string() + ", two chunks' state");
  }
}

TEST_CASE("prefill and 8 decode steps on a CUDA model equal the CPU model's steps", "[cuda]") {
  require_cuda_device();
  const auto& host = mambakit::test::in_tree_plugins();
  for (const auto& dir : mambakit::test::model_fixture_dirs_on(sdk::DeviceType::kCuda)) {
    const auto expected = mambakit::SafetensorsFile::open(dir / "expected.safetensors");
    Model cpu = Model::load(dir, host);
    Model gpu = Model::load(dir, host, on_gpu());
    const TokenBatch prompt = mambakit::test::fixture_tokens(expected, 7);
    InferenceState cpu_state = cpu.make_state(prompt.batch), gpu_state = gpu.make_state(prompt.batch);
    const FloatTensor cpu_prefill = cpu.forward(prompt, &cpu_state, true);
    check_close(gpu.forward(prompt, &gpu_state, true), cpu_prefill, dir.filename().string() + " prefill");
    std::vector<std::int32_t> next = argmax_rows(cpu_prefill);
    for (int step = 0; step < 8; ++step) {
      const FloatTensor cpu_logits = cpu.step(next, cpu_state);
      check_close(gpu.step(next, gpu_state), cpu_logits, fmt::format("{} step {}", dir.filename().string(), step));
      next = argmax_rows(cpu_logits);
    }
    check_states(gpu_state, cpu_state, dir.filename().string() + " after 8 steps");
  }
}

TEST_CASE("decode steps replayed from CUDA graphs equal the uncaptured steps bit for bit", "[cuda]") {
  require_cuda_device();
  const auto& host = mambakit::test::in_tree_plugins();
  for (const auto& dir : mambakit::test::model_fixture_dirs_on(sdk::DeviceType::kCuda)) {
    const auto expected = mambakit::SafetensorsFile::open(dir / "expected.safetensors");
    Model graphs = Model::load(dir, host, on_gpu(true));
    Model plain = Model::load(dir, host, on_gpu(false));
    for (const std::int64_t batch : {2, 1}) {  // two batch sizes: two graphs in one model
      TokenBatch prompt = mambakit::test::fixture_tokens(expected, 7);
      prompt = TokenBatch{batch, 7, std::vector<std::int32_t>(prompt.ids.begin(), prompt.ids.begin() + batch * 7)};
      InferenceState graph_state = graphs.make_state(batch), plain_state = plain.make_state(batch);
      std::vector<std::int32_t> next = argmax_rows(plain.forward(prompt, &plain_state, true));
      REQUIRE(argmax_rows(graphs.forward(prompt, &graph_state, true)) == next);
      // Step 0 warms up, step 1 is captured, the rest replay; step_argmax shares the graph.
      for (int step = 0; step < 10; ++step) {
        INFO(dir.filename().string() << " batch " << batch << " step " << step);
        const FloatTensor expected_logits = plain.step(next, plain_state);
        if (step % 3 == 2) {
          const std::vector<std::int32_t> ids = graphs.step_argmax(next, graph_state);
          CHECK(ids == argmax_rows(expected_logits));
          next = ids;
          continue;
        }
        const FloatTensor logits = graphs.step(next, graph_state);
        REQUIRE(logits.shape == expected_logits.shape);
        CHECK(logits.values == expected_logits.values);
        next = argmax_rows(expected_logits);
      }
      for (std::int64_t layer = 0; layer < plain_state.n_layers(); ++layer) {
        for (std::int64_t i = 0; i < plain_state.tensor_count(layer); ++i) {
          CHECK(graph_state.tensor(layer, i).values == plain_state.tensor(layer, i).values);
        }
      }
    }
  }
}

TEST_CASE("greedy and sampled generation on a CUDA model give the CPU model's tokens", "[cuda]") {
  require_cuda_device();
  const auto& host = mambakit::test::in_tree_plugins();
  const std::vector<std::vector<std::int32_t>> prompts = {{1, 2, 3}, {4, 5, 6, 7, 8, 9, 10}, {11}};
  for (const auto& dir : mambakit::test::model_fixture_dirs_on(sdk::DeviceType::kCuda)) {
    Model cpu = Model::load(dir, host);
    Model gpu = Model::load(dir, host, on_gpu());
    for (const double temperature : {0.0, 0.8}) {
      mambakit::GenerationOptions options;
      options.max_new_tokens = 16;
      options.sampling.temperature = temperature;
      options.sampling.seed = 7;
      options.eos_id = 0;
      std::vector<std::pair<std::int64_t, std::int32_t>> streamed;
      const auto on_cpu = mambakit::generate(cpu, prompts, options);
      const auto on_device = mambakit::generate(gpu, prompts, options, [&](std::int64_t row, std::int32_t token) {
        streamed.emplace_back(row, token);
        return true;
      });
      INFO(dir.filename().string() << " temperature " << temperature);
      CHECK(on_device.new_tokens == on_cpu.new_tokens);
      CHECK(on_device.stopped_at_eos == on_cpu.stopped_at_eos);
      std::size_t total = 0;
      for (const auto& row : on_cpu.new_tokens) total += row.size();
      CHECK(streamed.size() == total);
    }
  }
}

TEST_CASE("a CUDA model's state copies to the host on demand and back after reset, load and edits", "[cuda]") {
  require_cuda_device();
  const auto& host = mambakit::test::in_tree_plugins();
  const auto dir = mambakit::test::data_dir() / "models" / "tiny_tied";
  const auto expected = mambakit::SafetensorsFile::open(dir / "expected.safetensors");
  Model cpu = Model::load(dir, host);
  Model gpu = Model::load(dir, host, on_gpu());
  const TokenBatch prompt = mambakit::test::fixture_tokens(expected, 7);
  InferenceState cpu_state = cpu.make_state(prompt.batch), gpu_state = gpu.make_state(prompt.batch);
  cpu.forward(prompt, &cpu_state, true);
  gpu.forward(prompt, &gpu_state, true);
  check_states(gpu_state, cpu_state, "after prefill");
  CHECK(gpu_state.bytes() == cpu_state.bytes());

  // save() reads the device copy; load() into a fresh state is uploaded before the next step.
  const auto file = std::filesystem::path(MAMBAKIT_TEST_BINARY_DIR) / "cuda_state.safetensors";
  gpu_state.save(file);
  InferenceState restored = gpu.make_state(prompt.batch);
  restored.load(file);
  const std::vector<std::int32_t> next(static_cast<std::size_t>(prompt.batch), 3);
  const FloatTensor cpu_logits = cpu.step(next, cpu_state);
  check_close(gpu.step(next, restored), cpu_logits, "step from a loaded state");
  check_states(restored, cpu_state, "state after a step from a loaded state");

  // A copy holds the host values; editing the host values is seen by the next device call.
  InferenceState copy = restored;
  check_states(copy, cpu_state, "a copied state");
  for (std::int64_t layer = 0; layer < copy.n_layers(); ++layer) {
    for (std::int64_t i = 0; i < copy.tensor_count(layer); ++i) {
      std::fill(copy.tensor(layer, i).values.begin(), copy.tensor(layer, i).values.end(), 0.0f);
    }
  }
  InferenceState zero = cpu.make_state(prompt.batch);
  check_close(gpu.forward(prompt, &copy), cpu.forward(prompt, &zero), "forward from an edited (zeroed) state");

  // reset() zeroes the state for the device too.
  restored.reset();
  InferenceState fresh = cpu.make_state(prompt.batch);
  check_close(gpu.forward(prompt, &restored), cpu.forward(prompt, &fresh), "forward after reset()");
  check_states(restored, fresh, "state after reset() and a forward");
}

TEST_CASE("accumulate_gradients on a CUDA model matches the CPU model for every fixture", "[cuda]") {
  require_cuda_device();
  const auto& host = mambakit::test::in_tree_plugins();
  for (const auto& dir : mambakit::test::model_fixture_dirs_on(sdk::DeviceType::kCuda)) {
    const auto expected = mambakit::SafetensorsFile::open(dir / "expected.safetensors");
    Model cpu = Model::load(dir, host, f32_on({}));
    Model gpu = Model::load(dir, host, f32_on(kGpu));
    // Two micro-batches: full rows, then right-padded rows of different lengths.
    const TokenBatch full = mambakit::test::fixture_tokens(expected, 7);
    TokenBatch padded = mambakit::test::fixture_tokens(expected, 33);
    padded.lengths.assign(static_cast<std::size_t>(padded.batch), 33);
    for (std::size_t b = 0; b < padded.lengths.size(); ++b) padded.lengths[b] = static_cast<std::int32_t>(33 - 9 * b % 31);
    for (const bool recompute : {false, true}) {
      const std::string name = fmt::format("{}, recompute {}", dir.filename().string(), recompute);
      INFO(name);
      cpu.zero_gradients();
      gpu.zero_gradients();
      for (const TokenBatch* batch : std::vector<const TokenBatch*>{&full, &padded}) {
        const double cpu_loss = cpu.accumulate_gradients(*batch, {}, recompute);
        CHECK(gpu.accumulate_gradients(*batch, {}, recompute) == Approx(cpu_loss).epsilon(1e-5));
        CHECK(gpu.last_activation_bytes() == cpu.last_activation_bytes());
        CHECK(gpu.evaluate_loss(*batch) == Approx(cpu.evaluate_loss(*batch)).epsilon(1e-5));
      }
      check_gradients(gpu, cpu, name);
    }
  }
}

TEST_CASE("host writes through parameter slices, and announced later ones, reach a CUDA model's next call", "[cuda]") {
  require_cuda_device();
  const auto& host = mambakit::test::in_tree_plugins();
  const auto dir = mambakit::test::data_dir() / "models" / "tiny_untied_bias";
  Model cpu = Model::load(dir, host, f32_on({}));
  Model gpu = Model::load(dir, host, f32_on(kGpu));
  const TokenBatch tokens = mambakit::test::fixture_tokens(mambakit::SafetensorsFile::open(dir / "expected.safetensors"), 7);
  const FloatTensor before = cpu.forward(tokens);
  check_close(gpu.forward(tokens), before, "before the edit");
  for (Model* model : {&cpu, &gpu}) {
    for (const auto& slice : model->parameter_slices()) {
      if (slice.name != "backbone.norm_f.weight") continue;
      for (std::int64_t i = 0; i < slice.numel; ++i) slice.values[i] *= -2.0f;
    }
  }
  const FloatTensor after = cpu.forward(tokens);
  REQUIRE(max_abs_difference(after.values, before.values) > 1e-3);
  check_close(gpu.forward(tokens), after, "after the edit");

  // A later write through slices kept from before, announced with parameters_changed().
  std::vector<std::vector<mambakit::ParameterSlice>> kept = {cpu.parameter_slices(), gpu.parameter_slices()};
  gpu.forward(tokens);  // uploads, leaving the device copy current
  for (auto& slices : kept) {
    for (const auto& slice : slices) {
      if (slice.name == "backbone.norm_f.weight") slice.values[0] += 0.5f;
    }
  }
  gpu.parameters_changed();
  const FloatTensor later = cpu.forward(tokens);
  REQUIRE(max_abs_difference(later.values, after.values) > 1e-4);
  check_close(gpu.forward(tokens), later, "after parameters_changed()");
}

TEST_CASE("a few AdamW steps on a CUDA model give the CPU model's losses", "[cuda]") {
  require_cuda_device();
  const auto& host = mambakit::test::in_tree_plugins();
  const auto dir = mambakit::test::data_dir() / "models" / "tiny_tied";
  const TokenBatch tokens = mambakit::test::fixture_tokens(mambakit::SafetensorsFile::open(dir / "expected.safetensors"), 33);
  std::vector<double> losses[2], norms[2];
  std::vector<float> final_weights[2];
  for (int device = 0; device < 2; ++device) {
    Model model = Model::load(dir, host, f32_on(device == 0 ? sdk::Device{} : kGpu));
    mambakit::AdamW optimizer(model, {});
    for (int step = 0; step < 5; ++step) {
      model.zero_gradients();
      losses[device].push_back(model.accumulate_gradients(tokens, {}, step % 2 == 1));
      norms[device].push_back(optimizer.step(3e-3));
    }
    losses[device].push_back(model.evaluate_loss(tokens));
    final_weights[device] = model.parameter_values("backbone.embeddings.weight");
  }
  for (std::size_t i = 0; i < losses[0].size(); ++i) {
    INFO("loss " << i);
    CHECK(losses[1][i] == Approx(losses[0][i]).epsilon(1e-4));
  }
  for (std::size_t i = 0; i < norms[0].size(); ++i) {
    INFO("gradient norm " << i);
    CHECK(norms[1][i] == Approx(norms[0][i]).epsilon(1e-3));
  }
  CHECK(losses[0].back() < losses[0].front());
  CHECK(max_abs_difference(final_weights[1], final_weights[0]) <= 1e-4 * std::max(1.0, largest_magnitude(final_weights[0])));
}

TEST_CASE("mambakit train --device cuda trains and saves a model", "[cuda]") {
  require_cuda_device();
  const std::filesystem::path dir = mambakit::test::scratch_dir("cuda_train");
  const std::filesystem::path corpus =
      mambakit::test::write_corpus(dir, "And the evening and the morning were the day", 60, 9);
  std::ofstream(dir / "run.json") << fmt::format(
      R"({{"model": {{"task": "causal_lm", "d_model": 16, "n_layer": 2, "d_state": 4, "vocab_size": 257}},
          "train_data": "{}", "seq_len": 16, "batch_size": 2, "grad_accum": 2, "steps": 4, "warmup": 1,
          "eval_every": 2, "eval_batches": 1, "log_every": 1, "recompute": true, "output_dir": "{}", "threads": 1}})",
      corpus.string(), (dir / "run").string());
  const auto result = mambakit::test::run_command(std::string(MAMBAKIT_CLI_PATH) + " train --config " +
                                                  (dir / "run.json").string() + " --device cuda");
  INFO(result.errors);
  REQUIRE(result.exit_code == 0);
  CHECK_THAT(result.errors, Contains("step 4/4") && Contains("valid loss"));
  CHECK(Model::load(dir / "run" / "model", mambakit::test::in_tree_plugins()).parameter_count() > 0);
}

TEST_CASE("a component without CUDA support makes a CUDA model fail, naming it", "[cuda]") {
  // The capability check comes before any device is touched: this case runs without a GPU.
  const auto& host = mambakit::test::in_tree_plugins();
  mambakit::ModelConfig config;
  config.d_model = 16;
  config.n_layer = 2;
  config.mixer = {"s6", R"({"d_state": 4})"};
  config.head = {"classification", R"({"num_labels": 3})"};
  config.vocab_size = 30;
  CHECK_THROWS_AS(Model::create(config, host, on_gpu()), mambakit::Error);
  CHECK_THROWS_WITH(Model::create(config, host, on_gpu()),
                    Contains("head/classification") && Contains("does not run on cuda:0"));
}
