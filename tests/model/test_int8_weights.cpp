// Int8 weights (ModelOptions::weights_dtype = kQ8, `mambakit quantize`, `--dtype int8`): the
// linear weights int8 with f32 scales per group, the rest f32. The reference is built
// independently: the int8 checkpoint a quantized model writes is read here, dequantized by the
// format's definition (value x scale of its group) and loaded as an f32 model. Prefill and
// decode, which also quantize the projections' inputs, must stay within that quantization's
// error of it, and decode must give what prefill gives. Also: the saved folder round trip, the errors an
// int8 checkpoint can have, and score_sequence (eval) against the PyTorch reference's logits.

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "mambakit/error.hpp"
#include "mambakit/evaluation.hpp"
#include "mambakit/model.hpp"
#include "mambakit/safetensors.hpp"

namespace fs = std::filesystem;
namespace sdk = mambakit::sdk;
using Catch::Matchers::Contains;

namespace {

mambakit::Model load(const fs::path& dir, std::optional<sdk::DType> dtype) {
  mambakit::ModelOptions options;
  options.weights_dtype = dtype;
  options.n_threads = 2;
  return mambakit::Model::load(dir, mambakit::test::in_tree_plugins(), options);
}

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::path(MAMBAKIT_TEST_BINARY_DIR) / "int8" / name;
  fs::remove_all(dir);
  fs::create_directories(dir.parent_path());
  return dir;
}

/// `fixture` quantized (groups of `group_size`) and saved as an int8 folder; `label` keeps test
/// cases that ctest runs at once apart.
fs::path quantized_folder(const std::string& fixture, std::int64_t group_size, const std::string& label) {
  auto model = load(mambakit::test::data_dir() / "models" / fixture, sdk::DType::kF32);
  model.quantize(group_size, true);
  const fs::path dir = scratch(fmt::format("{}_{}_g{}", label, fixture, group_size));
  model.save(dir, sdk::DType::kQ8);
  return dir;
}

/// The f32 checkpoint of an int8 one, dequantized by the format's definition: W[n][k] =
/// values[n][k] * scales[n][k / group_size]; other tensors copied.
fs::path dequantized_folder(const fs::path& int8_dir, std::int64_t group_size) {
  const auto checkpoint = mambakit::SafetensorsFile::open(int8_dir / "model.safetensors");
  std::vector<std::vector<float>> values;
  std::vector<mambakit::SafetensorsTensor> tensors;
  values.reserve(checkpoint.entries().size());
  for (const auto& entry : checkpoint.entries()) {
    if (entry.name.ends_with("_scale")) continue;
    if (entry.dtype == sdk::DType::kI8) {
      const auto scales = checkpoint.read_f32(entry.name + "_scale");
      const auto* stored = static_cast<const std::int8_t*>(checkpoint.data(entry));
      const std::int64_t rows = entry.shape[0], cols = entry.shape[1], groups = (cols + group_size - 1) / group_size;
      values.emplace_back(static_cast<std::size_t>(rows * cols));
      for (std::int64_t n = 0; n < rows; ++n) {
        for (std::int64_t k = 0; k < cols; ++k) {
          values.back()[static_cast<std::size_t>(n * cols + k)] =
              static_cast<float>(stored[n * cols + k]) * scales[static_cast<std::size_t>(n * groups + k / group_size)];
        }
      }
    } else {
      values.push_back(checkpoint.read_f32(entry.name));
    }
    tensors.push_back({entry.name, sdk::DType::kF32, entry.shape, values.back().data()});
  }
  const fs::path dir = scratch(int8_dir.filename().string() + "_dequantized");
  fs::create_directories(dir);
  mambakit::write_safetensors(dir / "model.safetensors", tensors, {});
  std::ifstream config_in(int8_dir / "config.json");
  std::string config((std::istreambuf_iterator<char>(config_in)), std::istreambuf_iterator<char>());
  const auto key = config.find("\"quantization\"");
  REQUIRE(key != std::string::npos);
  config.erase(key, config.find('}', key) + 2 - key);  // the object and its comma
  std::ofstream(dir / "config.json") << config;
  return dir;
}

double relative_difference(const mambakit::FloatTensor& a, const mambakit::FloatTensor& b) {
  REQUIRE(a.values.size() == b.values.size());
  double largest = 0.0;
  for (float v : b.values) largest = std::max(largest, std::fabs(double{v}));
  return mambakit::test::max_abs_difference(a.values, b.values) / largest;
}

void write_text(const fs::path& file, const std::string& text) { std::ofstream(file) << text; }

}  // namespace

TEST_CASE("int8 weights compute close to their dequantized f32 values, and decode what prefill computes") {
  for (const char* fixture : {"tiny_tied", "tiny_untied_bias", "mamba2_hf_groups"}) {
    for (const std::int64_t group_size : {32, 128}) {
      INFO(fixture << ", groups of " << group_size);
      const fs::path int8_dir = quantized_folder(fixture, group_size, "compute");
      auto held = load(int8_dir, std::nullopt);
      REQUIRE(held.weights_dtype() == sdk::DType::kQ8);
      auto reference = load(dequantized_folder(int8_dir, group_size), sdk::DType::kF32);
      const std::int64_t vocab = held.config().vocab_size;
      const auto tokens = mambakit::test::two_row_prompt(vocab);
      // The projections' inputs are quantized too (per group, 8 bits), in prefill and decode.
      const auto held_logits = held.forward(tokens);
      const double prefill = relative_difference(held_logits, reference.forward(tokens));
      auto held_state = held.make_state(2), reference_state = reference.make_state(2);
      double decode = 0.0, decode_vs_prefill = 0.0;
      for (std::int64_t t = 0; t < tokens.length; ++t) {
        const std::vector<std::int32_t> ids{tokens.ids[static_cast<std::size_t>(t)],
                                            tokens.ids[static_cast<std::size_t>(tokens.length + t)]};
        const auto step = held.step(ids, held_state);
        decode = std::max(decode, relative_difference(step, reference.step(ids, reference_state)));
        mambakit::FloatTensor position({2, 1, vocab});
        for (std::int64_t b = 0; b < 2; ++b) {
          std::copy_n(held_logits.values.begin() + (b * tokens.length + t) * vocab, vocab,
                      position.values.begin() + b * vocab);
        }
        decode_vs_prefill = std::max(decode_vs_prefill, relative_difference(step, position));
      }
      INFO("max |logit difference| / max |logit|: prefill " << prefill << ", decode " << decode
                                                            << ", int8 decode against int8 prefill " << decode_vs_prefill);
      CHECK(prefill < 0.05);
      CHECK(decode < 0.05);
      CHECK(decode_vs_prefill < 1e-5);
    }
  }
}

TEST_CASE("an int8 folder loads back bit for bit and keeps the other parameters f32") {
  const fs::path fixture = mambakit::test::data_dir() / "models" / "tiny_untied_bias";
  auto original = load(fixture, sdk::DType::kF32);
  auto quantized = load(fixture, sdk::DType::kF32);
  quantized.quantize(64, true);
  const fs::path dir = scratch("round_trip");
  quantized.save(dir, sdk::DType::kQ8);
  auto loaded = load(dir, std::nullopt);
  const auto tokens = mambakit::test::two_row_prompt(loaded.config().vocab_size);
  CHECK(loaded.forward(tokens).values == quantized.forward(tokens).values);
  CHECK(loaded.weights_dtype() == sdk::DType::kQ8);
  const auto checkpoint = mambakit::SafetensorsFile::open(dir / "model.safetensors");
  for (const auto& parameter : original.parameters()) {
    const auto& entry = checkpoint.at(parameter.name);
    const bool linear = parameter.name.ends_with("proj.weight") || parameter.name == "lm_head.weight";
    INFO(parameter.name);
    CHECK((entry.dtype == sdk::DType::kI8) == linear);
    if (!linear) CHECK(checkpoint.read_f32(parameter.name) == original.parameter_values(parameter.name));
  }
  // Loaded as f32, it holds the dequantized values; quantized again, the same int8 values.
  auto widened = load(dir, sdk::DType::kF32);
  CHECK(widened.parameter_values("lm_head.weight") == loaded.parameter_values("lm_head.weight"));
  widened.quantize(64, true);
  CHECK(widened.forward(tokens).values == loaded.forward(tokens).values);
}

TEST_CASE("the head's weight stays f32 when asked, and --dtype int8 quantizes at load") {
  const fs::path fixture = mambakit::test::data_dir() / "models" / "tiny_tied";
  auto model = load(fixture, sdk::DType::kF32);
  const auto embedding = model.parameter_values("backbone.embeddings.weight");
  model.quantize(32, false);
  CHECK(model.parameter_values("backbone.embeddings.weight") == embedding);
  CHECK(model.parameter_values("backbone.layers.0.mixer.in_proj.weight") !=
        load(fixture, sdk::DType::kF32).parameter_values("backbone.layers.0.mixer.in_proj.weight"));
  auto at_load = load(fixture, sdk::DType::kQ8);
  CHECK(at_load.weights_dtype() == sdk::DType::kQ8);
  CHECK(at_load.config().quantization.group_size == mambakit::kDefaultInt8GroupSize);
  CHECK(at_load.parameter_values("backbone.embeddings.weight") != embedding);
  // A 16-bit checkpoint quantizes at load too: its values widened, then rounded to int8.
  for (const char* half : {"tiny_bf16", "tiny_f16"}) {
    const fs::path dir = mambakit::test::data_dir() / "models" / half;
    auto from_half = load(dir, sdk::DType::kQ8);
    auto widened = load(dir, sdk::DType::kF32);
    widened.quantize(mambakit::kDefaultInt8GroupSize, true);
    INFO(half);
    CHECK(from_half.weights_dtype() == sdk::DType::kQ8);
    const auto tokens = mambakit::test::two_row_prompt(from_half.config().vocab_size);
    CHECK(from_half.forward(tokens).values == widened.forward(tokens).values);
  }
}

TEST_CASE("a broken int8 checkpoint is an error naming the file and the tensor") {
  const fs::path good = quantized_folder("tiny_untied_bias", 32, "broken");
  const std::string in_proj = "backbone.layers.0.mixer.in_proj.weight";
  auto rewrite = [&](const std::string& name, auto&& edit) {
    const fs::path dir = scratch("broken_" + name);
    fs::copy(good, dir);
    const auto checkpoint = mambakit::SafetensorsFile::open(good / "model.safetensors");
    std::vector<std::vector<char>> bytes;
    std::vector<mambakit::SafetensorsTensor> tensors;
    bytes.reserve(checkpoint.entries().size());
    for (const auto& entry : checkpoint.entries()) {
      const auto* data = static_cast<const char*>(checkpoint.data(entry));
      bytes.emplace_back(data, data + entry.size_bytes);
      tensors.push_back({entry.name, entry.dtype, entry.shape, bytes.back().data()});
    }
    edit(tensors);
    mambakit::write_safetensors(dir / "model.safetensors", tensors, {});
    return dir;
  };
  auto find = [](std::vector<mambakit::SafetensorsTensor>& tensors, const std::string& name) -> auto& {
    return *std::find_if(tensors.begin(), tensors.end(), [&](const auto& t) { return t.name == name; });
  };
  const fs::path no_scale = rewrite("no_scale", [&](auto& tensors) {
    tensors.erase(std::find_if(tensors.begin(), tensors.end(), [&](const auto& t) { return t.name == in_proj + "_scale"; }));
  });
  CHECK_THROWS_WITH(load(no_scale, std::nullopt), Contains(in_proj) && Contains("has no scales"));
  const fs::path bad_shape = rewrite("bad_scale_shape", [&](auto& tensors) { find(tensors, in_proj + "_scale").shape = {32, 2}; });
  CHECK_THROWS_WITH(load(bad_shape, std::nullopt), Contains(in_proj + "_scale") && Contains("f32 (32, 2)"));
  std::vector<float> negative;
  const fs::path bad_scale = rewrite("negative_scale", [&](auto& tensors) {
    auto& entry = find(tensors, in_proj + "_scale");
    negative.assign(static_cast<std::size_t>(entry.shape[0] * entry.shape[1]), -1.0f);
    entry.data = negative.data();
  });
  CHECK_THROWS_WITH(load(bad_scale, std::nullopt), Contains(in_proj + "_scale") && Contains("finite and >= 0"));
  std::vector<std::int8_t> minimum;
  const fs::path bad_value = rewrite("minus_128", [&](auto& tensors) {
    auto& entry = find(tensors, in_proj);
    minimum.assign(static_cast<std::size_t>(entry.shape[0] * entry.shape[1]), -128);
    entry.data = minimum.data();
  });
  CHECK_THROWS_WITH(load(bad_value, std::nullopt), Contains(in_proj) && Contains("[-127, 127]"));
  std::vector<std::int8_t> a_log;
  std::vector<float> a_scale;
  const fs::path not_linear = rewrite("int8_a_log", [&](auto& tensors) {
    auto& entry = find(tensors, "backbone.layers.0.mixer.A_log");
    a_log.assign(static_cast<std::size_t>(entry.shape[0] * entry.shape[1]), 1);
    a_scale.assign(static_cast<std::size_t>(entry.shape[0]), 1.0f);
    entry.dtype = sdk::DType::kI8;
    entry.data = a_log.data();
    tensors.push_back({"backbone.layers.0.mixer.A_log_scale", sdk::DType::kF32, {entry.shape[0], 1}, a_scale.data()});
  });
  CHECK_THROWS_WITH(load(not_linear, std::nullopt), Contains("A_log") && Contains("reads it only as f32"));
  const fs::path no_quantization = scratch("broken_config_without_quantization");
  fs::copy(good, no_quantization);
  {
    std::ifstream in(good / "config.json");
    std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto key = config.find("\"quantization\"");
    config.erase(key, config.find('}', key) + 2 - key);
    write_text(no_quantization / "config.json", config);
  }
  CHECK_THROWS_WITH(load(no_quantization, std::nullopt), Contains("declares no int8 quantization"));
  const fs::path bad_group = scratch("broken_bad_group");
  fs::copy(good, bad_group);
  {
    std::ifstream in(good / "config.json");
    std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto key = config.find("\"group_size\": 32");
    REQUIRE(key != std::string::npos);
    config.replace(key, 16, "\"group_size\": 48");
    write_text(bad_group / "config.json", config);
  }
  CHECK_THROWS_WITH(load(bad_group, std::nullopt), Contains("quantization.group_size") && Contains("48"));
}

TEST_CASE("int8 weights are refused on a CUDA device, naming it") {
  mambakit::ModelOptions options;
  options.weights_dtype = sdk::DType::kQ8;
  options.device = {sdk::DeviceType::kCuda, 0};
  CHECK_THROWS_WITH(mambakit::Model::load(mambakit::test::data_dir() / "models" / "tiny_tied",
                                          mambakit::test::in_tree_plugins(), options),
                    Contains("int8 weights run on the CPU only"));
}

TEST_CASE("score_sequence sums the next-token NLL of the PyTorch reference's logits, in any window") {
  const fs::path dir = mambakit::test::data_dir() / "models" / "tiny_untied_bias";
  const auto expected = mambakit::SafetensorsFile::open(dir / "expected.safetensors");
  const auto tokens = mambakit::test::fixture_tokens(expected, 33);
  const auto logits = expected.read_f32("logits.L33");  // (batch, 33, vocab)
  const std::int64_t vocab = static_cast<std::int64_t>(logits.size()) / (tokens.batch * 33);
  const std::vector<std::int32_t> ids(tokens.ids.begin(), tokens.ids.begin() + 33);  // row 0
  double reference = 0.0;
  for (std::int64_t t = 0; t + 1 < 33; ++t) {
    const float* row = logits.data() + t * vocab;
    double sum = 0.0;
    for (std::int64_t v = 0; v < vocab; ++v) sum += std::exp(double{row[v]});
    reference += std::log(sum) - row[ids[static_cast<std::size_t>(t + 1)]];
  }
  auto model = load(dir, sdk::DType::kF32);
  for (const std::int64_t window : {1, 5, 32, 100}) {
    const auto score = mambakit::score_sequence(model, ids, window);
    INFO("window " << window);
    CHECK(score.predicted_tokens == 32);
    CHECK(score.nll_sum == Approx(reference).epsilon(1e-5));
  }
  const auto decoded = mambakit::score_sequence(model, ids, 1, {}, mambakit::ScoreMode::kDecode);
  CHECK(decoded.nll_sum == Approx(reference).epsilon(1e-5));
  CHECK_THROWS_WITH(mambakit::score_sequence(model, {ids[0]}, 8), Contains("at least 2 tokens"));
}
