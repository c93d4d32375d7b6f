// Hybrid stacks in the official mamba_ssm layout (attention and gated-MLP blocks, LayerNorm, a
// per-layer SSM config) against the independent float64 PyTorch reference
// (tools/hybrid_reference.py; fixtures tests/data/hybrid/, written by
// tools/make_hybrid_fixtures.py): logits, gradients, decode, chunked prefill, ragged batches,
// saved states, 16-bit weights, and what the state reports about its memory.

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fixtures.hpp"
#include "mambakit/config.hpp"
#include "mambakit/generation.hpp"
#include "mambakit/model.hpp"
#include "mambakit/safetensors.hpp"

namespace fs = std::filesystem;
namespace sdk = mambakit::sdk;
using mambakit::test::max_abs_difference;

namespace {

const std::vector<std::string> kHybrids = {"hybrid_mamba2_attn", "hybrid_mlp_layernorm", "hybrid_mixed_ssm"};
constexpr std::int64_t kLongest = 17;  // the longest prompt of every hybrid fixture
constexpr double kTolerance = 1e-4;    // of the reference's largest |logit| (at least 1)

fs::path hybrid_dir(const std::string& name) { return mambakit::test::data_dir() / "hybrid" / name; }

mambakit::Model load(const std::string& name, const mambakit::ModelOptions& options = {}) {
  return mambakit::Model::load(hybrid_dir(name), mambakit::test::in_tree_plugins(), options);
}

nlohmann::json read_config(const std::string& name) {
  std::ifstream stream(hybrid_dir(name) / "config.json");
  REQUIRE(stream);
  return nlohmann::json::parse(stream);
}

/// The name `parameter` has in an official checkpoint `file`: the model calls the embedding
/// "backbone.embeddings.weight" (Hugging Face's name), mamba_ssm "backbone.embedding.weight".
std::string stored_name(const mambakit::SafetensorsFile& file, const std::string& parameter) {
  if (parameter == "backbone.embeddings.weight" && file.find(parameter) == nullptr) return "backbone.embedding.weight";
  return parameter;
}

/// The token ids stored (as exact small floats) under `key`, a (B, L) tensor.
mambakit::TokenBatch tokens_named(const mambakit::SafetensorsFile& file, const std::string& key) {
  const auto& entry = file.at(key);
  REQUIRE(entry.shape.size() == 2);
  mambakit::TokenBatch tokens{entry.shape[0], entry.shape[1], {}};
  for (const float v : file.read_f32(key)) tokens.ids.push_back(static_cast<std::int32_t>(v));
  return tokens;
}

/// max |v|.
double largest(const std::vector<float>& values) {
  double out = 0.0;
  for (const float v : values) out = std::max(out, static_cast<double>(std::abs(v)));
  return out;
}

/// max(1, max |v|): the scale logit errors are measured against.
double scale_of(const std::vector<float>& values) { return std::max(1.0, largest(values)); }

/// max |got - want| / scale_of(want).
double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  return max_abs_difference(got, want) / scale_of(want);
}

/// Rows `position` of every batch row of a (B, L, V) array: (B, V).
std::vector<float> at_position(const std::vector<float>& logits, std::int64_t batch, std::int64_t length,
                               std::int64_t vocab, std::int64_t position) {
  std::vector<float> out;
  for (std::int64_t b = 0; b < batch; ++b) {
    const auto begin = logits.begin() + (b * length + position) * vocab;
    out.insert(out.end(), begin, begin + vocab);
  }
  return out;
}

/// Per batch row, positions [begin, end) of a (B, L, V) array: (B, end - begin, V).
std::vector<float> positions_of(const std::vector<float>& logits, std::int64_t batch, std::int64_t length,
                                std::int64_t vocab, std::int64_t begin, std::int64_t end) {
  std::vector<float> out;
  for (std::int64_t b = 0; b < batch; ++b) {
    const auto first = logits.begin() + (b * length + begin) * vocab;
    out.insert(out.end(), first, first + (end - begin) * vocab);
  }
  return out;
}

/// The reference of one hybrid fixture: its expected.safetensors and the longest prompt.
struct Reference {
  explicit Reference(const std::string& name)
      : expected(mambakit::SafetensorsFile::open(hybrid_dir(name) / "expected.safetensors")),
        tokens(tokens_named(expected, fmt::format("tokens.L{}", kLongest))),
        logits(expected.read_f32(fmt::format("logits.L{}", kLongest))),
        vocab(expected.at(fmt::format("logits.L{}", kLongest)).shape[2]) {}

  /// The reference logits of every row at `position` of the longest prompt: (B, V).
  [[nodiscard]] std::vector<float> at(std::int64_t position) const {
    return at_position(logits, tokens.batch, tokens.length, vocab, position);
  }

  mambakit::SafetensorsFile expected;
  mambakit::TokenBatch tokens;
  std::vector<float> logits;
  std::int64_t vocab;
};

/// Token `t` of every row of `tokens`.
std::vector<std::int32_t> column(const mambakit::TokenBatch& tokens, std::int64_t t) {
  return mambakit::test::slice(tokens, t, t + 1).ids;
}

/// Bytes a minimal KV cache holds per token for `batch` rows: f32 keys and values of
/// num_heads_kv heads of head_dim for every attention layer (the official defaults: num_heads_kv
/// = num_heads, head_dim = d_model / num_heads).
std::size_t kv_bytes_per_token(const nlohmann::json& config, std::int64_t batch) {
  const auto& attn = config.at("attn_cfg");
  const std::int64_t heads = attn.at("num_heads");
  const std::int64_t heads_kv = attn.value("num_heads_kv", heads);
  const std::int64_t head_dim = attn.value("head_dim", config.at("d_model").get<std::int64_t>() / heads);
  const auto layers = static_cast<std::int64_t>(config.at("attn_layer_idx").size());
  return static_cast<std::size_t>(layers * batch * 2 * heads_kv * head_dim) * sizeof(float);
}

/// Every CPU kernel the layers of a hybrid use, one choice each: those of the Mamba layers
/// (selective scan, SSD) and of the attention layers (kind "attention"); other kinds auto.
std::vector<mambakit::test::KernelChoice> hybrid_kernel_choices() {
  auto choices = mambakit::test::cpu_kernel_choices();
  const std::string kind = "attention";
  for (const auto& name : mambakit::test::in_tree_plugins().kernel_names(kind)) {
    choices.push_back({kind + "/" + name, {{kind, name}}});
  }
  return choices;
}

}  // namespace

TEST_CASE("hybrid fixtures load from the official layout with the reference's parameters") {
  const std::string name = GENERATE(from_range(kHybrids));
  INFO(name);
  const auto config_json = read_config(name);
  const auto model = load(name);
  const auto& config = model.config();
  CHECK(config.n_layer == config_json.at("n_layer").get<std::int64_t>());
  CHECK(config.d_model == config_json.at("d_model").get<std::int64_t>());
  CHECK((config.norm == mambakit::NormKind::kRms) == config_json.at("rms_norm").get<bool>());
  CHECK(config.mlp.name.empty() == (config_json.at("d_intermediate").get<std::int64_t>() == 0));
  CHECK(config.tie_embeddings == config_json.at("tie_embeddings").get<bool>());

  // Every tensor of the checkpoint is a parameter of the model, with its shape, and no more.
  const auto checkpoint = mambakit::SafetensorsFile::open(hybrid_dir(name) / "model.safetensors");
  std::set<std::string> stored;
  for (const auto& entry : checkpoint.entries()) stored.insert(entry.name);
  std::set<std::string> declared;
  for (const auto& parameter : model.parameters()) {
    declared.insert(stored_name(checkpoint, parameter.name));
    const auto* entry = checkpoint.find(stored_name(checkpoint, parameter.name));
    INFO(parameter.name);
    REQUIRE(entry != nullptr);
    CHECK(parameter.shape == entry->shape);
  }
  CHECK(declared == stored);
}

TEST_CASE("hybrid logits match the PyTorch reference at every length, for every CPU kernel") {
  const std::string name = GENERATE(from_range(kHybrids));
  const auto expected = mambakit::SafetensorsFile::open(hybrid_dir(name) / "expected.safetensors");
  for (const auto& choice : hybrid_kernel_choices()) {
    mambakit::ModelOptions options;
    options.kernels = choice.kernels;
    auto model = load(name, options);
    for (const std::int64_t length : {1, 3, 7, 17}) {
      const auto tokens = tokens_named(expected, fmt::format("tokens.L{}", length));
      const auto want = expected.read_f32(fmt::format("logits.L{}", length));
      const double error = relative_error(model.forward(tokens).values, want);
      INFO(name << " with " << choice.label << ", L = " << length << ": max |logit error| " << error
                << " of the largest logit " << scale_of(want));
      CHECK(error < kTolerance);
    }
  }
}

TEST_CASE("hybrid gradients match PyTorch autograd for every parameter, with and without recomputation") {
  const std::string name = GENERATE(from_range(kHybrids));
  const auto expected = mambakit::SafetensorsFile::open(hybrid_dir(name) / "expected.safetensors");
  const auto reference = mambakit::SafetensorsFile::open(hybrid_dir(name) / "grads.safetensors");
  REQUIRE(reference.metadata().at("tokens") == "tokens.L7");
  for (const auto& choice : hybrid_kernel_choices()) {
    mambakit::ModelOptions options;
    options.weights_dtype = sdk::DType::kF32;
    options.kernels = choice.kernels;
    auto model = load(name, options);
    for (const bool recompute : {false, true}) {
      model.zero_gradients();
      const double loss = model.accumulate_gradients(tokens_named(expected, "tokens.L7"), {}, recompute);
      INFO(name << " with " << choice.label << (recompute ? ", recomputing activations" : ", keeping activations"));
      CHECK(loss == Approx(reference.read_f32("loss")[0]).epsilon(1e-5));
      for (const auto& parameter : model.parameters()) {
        const auto* stored = reference.find(stored_name(reference, parameter.name));
        INFO(parameter.name);
        REQUIRE(stored != nullptr);
        const auto want = reference.read_f32(stored->name);
        const double scale = largest(want);
        const double error = max_abs_difference(model.gradient_values(parameter.name), want);
        INFO("max error " << error << " of largest gradient " << scale);
        CHECK(error <= 1e-4 * scale + 1e-7);
      }
    }
  }
}

TEST_CASE("hybrid decode, token by token or after a prefill, gives the reference's forward logits") {
  const std::string name = GENERATE(from_range(kHybrids));
  const Reference reference(name);
  for (const auto& choice : hybrid_kernel_choices()) {
    mambakit::ModelOptions options;
    options.kernels = choice.kernels;
    auto model = load(name, options);
    // prefill 0 (every token a step), 1, 4 (the attention conv's width) and all but one token
    for (const std::int64_t prefill : {0, 1, 4, 16}) {
      auto state = model.make_state(reference.tokens.batch);
      double worst = 0.0;
      if (prefill > 0) {
        const auto logits = model.forward(mambakit::test::slice(reference.tokens, 0, prefill), &state, true);
        worst = relative_error(logits.values, reference.at(prefill - 1));
      }
      for (std::int64_t t = prefill; t < kLongest; ++t) {
        const auto logits = model.step(column(reference.tokens, t), state);
        worst = std::max(worst, relative_error(logits.values, reference.at(t)));
      }
      INFO(name << " with " << choice.label << ", prefill " << prefill << " then steps: max relative logit error "
                << worst);
      CHECK(worst < kTolerance);
      CHECK(state.seqlen_offset() == kLongest);
      CHECK(state.positions() == std::vector<std::int64_t>(static_cast<std::size_t>(reference.tokens.batch), kLongest));
    }
  }
}

TEST_CASE("a hybrid prompt processed in two chunks gives the logits of one pass") {
  const std::string name = GENERATE(from_range(kHybrids));
  const Reference reference(name);
  auto model = load(name);
  const std::int64_t batch = reference.tokens.batch;
  for (const std::int64_t split : {1, 3, 8, 16}) {
    auto state = model.make_state(batch);
    const auto head = model.forward(mambakit::test::slice(reference.tokens, 0, split), &state);
    const auto tail = model.forward(mambakit::test::slice(reference.tokens, split, kLongest), &state);
    INFO(name << ", split at " << split);
    CHECK(state.seqlen_offset() == kLongest);
    const double error_head = relative_error(
        head.values, positions_of(reference.logits, batch, kLongest, reference.vocab, 0, split));
    const double error_tail = relative_error(
        tail.values, positions_of(reference.logits, batch, kLongest, reference.vocab, split, kLongest));
    INFO("max relative logit error " << error_head << " before, " << error_tail << " after the split");
    CHECK(error_head < kTolerance);
    CHECK(error_tail < kTolerance);
  }
}

TEST_CASE("a saved hybrid state continues exactly, also when loaded into a state that held more") {
  const std::string name = GENERATE(from_range(kHybrids));
  const Reference reference(name);
  auto model = load(name);
  const std::int64_t batch = reference.tokens.batch, prefix = 9;
  auto state = model.make_state(batch);
  model.forward(mambakit::test::slice(reference.tokens, 0, prefix), &state);
  const auto file = fs::path(MAMBAKIT_TEST_BINARY_DIR) / (name + ".state.safetensors");
  state.save(file);

  auto fresh = model.make_state(batch);
  fresh.load(file);
  auto used = model.make_state(batch);  // holds all 17 tokens before the load
  model.forward(reference.tokens, &used);
  used.load(file);
  INFO(name);
  CHECK(fresh.seqlen_offset() == prefix);
  CHECK(used.seqlen_offset() == prefix);
  CHECK(used.positions() == std::vector<std::int64_t>(static_cast<std::size_t>(batch), prefix));
  double worst = 0.0;
  for (std::int64_t t = prefix; t < kLongest; ++t) {
    const auto direct = model.step(column(reference.tokens, t), state);
    CHECK(model.step(column(reference.tokens, t), fresh).values == direct.values);
    CHECK(model.step(column(reference.tokens, t), used).values == direct.values);
    worst = std::max(worst, relative_error(direct.values, reference.at(t)));
  }
  INFO("max relative logit error after the restore " << worst);
  CHECK(worst < kTolerance);
}

TEST_CASE("an empty hybrid state saves and loads, and a damaged positions entry is refused naming the file") {
  auto model = load("hybrid_mamba2_attn");
  const auto file = fs::path(MAMBAKIT_TEST_BINARY_DIR) / "hybrid_empty.state.safetensors";
  const auto empty = model.make_state(2);
  empty.save(file);
  auto restored = model.make_state(2);
  restored.load(file);
  CHECK(restored.positions() == std::vector<std::int64_t>{0, 0});
  CHECK(restored.seqlen_offset() == 0);
  // Rows holding more tokens than the file's caches have room for are refused, the state unchanged.
  auto held = model.make_state(2);
  model.forward(mambakit::TokenBatch{2, 3, {1, 2, 3, 4, 5, 6}}, &held);
  const auto held_file = fs::path(MAMBAKIT_TEST_BINARY_DIR) / "hybrid_held.state.safetensors";
  held.save(held_file);
  std::string bytes;
  {
    std::ifstream in(held_file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const auto at = bytes.find("\"3,3\"");
  REQUIRE(at != std::string::npos);
  bytes.replace(at, 5, "\"3,9\"");
  const auto damaged = fs::path(MAMBAKIT_TEST_BINARY_DIR) / "hybrid_damaged.state.safetensors";
  std::ofstream(damaged, std::ios::binary) << bytes;
  auto target = model.make_state(2);
  CHECK_THROWS_WITH(target.load(damaged), Catch::Matchers::Contains("hybrid_damaged.state.safetensors") &&
                                              Catch::Matchers::Contains("positions '3,9'"));
  CHECK(target.positions() == std::vector<std::int64_t>{0, 0});
}

TEST_CASE("hybrid models holding f16 or bf16 weights compute the reference of the rounded weights") {
  const std::string name = GENERATE(from_range(kHybrids));
  const Reference reference(name);
  const std::int64_t batch = reference.tokens.batch;
  for (const sdk::DType dtype : {sdk::DType::kF16, sdk::DType::kBF16}) {
    mambakit::ModelOptions options;
    options.weights_dtype = dtype;
    auto model = load(name, options);
    REQUIRE(model.weights_dtype() == dtype);
    // The reference rounded every weight but the block norms and norm_f to this dtype.
    const auto rounded = reference.expected.read_f32(fmt::format("logits_{}.L{}", sdk::dtype_name(dtype), kLongest));
    const auto logits = model.forward(reference.tokens);
    const double error = relative_error(logits.values, rounded);
    // ... which moves the logits a little from the f32 ones (measured: 0.007 to 0.013 for
    // f16, 0.04 to 0.06 for bf16).
    const double drift = max_abs_difference(logits.values, reference.logits);
    INFO(name << " held as " << sdk::dtype_name(dtype) << ": max relative error " << error
              << " against the rounded reference, " << drift << " from the f32 logits");
    CHECK(error < kTolerance);
    CHECK(drift < (dtype == sdk::DType::kF16 ? 0.05 : 0.2));

    auto state = model.make_state(batch);
    double worst = relative_error(model.forward(mambakit::test::slice(reference.tokens, 0, 5), &state, true).values,
                                  at_position(rounded, batch, kLongest, reference.vocab, 4));
    for (std::int64_t t = 5; t < kLongest; ++t) {
      worst = std::max(worst, relative_error(model.step(column(reference.tokens, t), state).values,
                                             at_position(rounded, batch, kLongest, reference.vocab, t)));
    }
    INFO("prefill 5 then decode: max relative error " << worst);
    CHECK(worst < kTolerance);
  }
}

TEST_CASE("a ragged hybrid batch continues each row from its own position, as the reference does") {
  const std::string name = GENERATE(from_range(kHybrids));
  const auto expected = mambakit::SafetensorsFile::open(hybrid_dir(name) / "expected.safetensors");
  auto model = load(name);
  const std::int64_t vocab = expected.at("ragged.prefill_logits").shape[1];
  const auto prefill_want = expected.read_f32("ragged.prefill_logits");
  // Each prompt prefilled alone (5 and 11 tokens) ...
  std::vector<mambakit::InferenceState> alone;
  for (std::int64_t row = 0; row < 2; ++row) {
    const auto prompt = tokens_named(expected, fmt::format("ragged.prompt{}", row));
    alone.push_back(model.make_state(1));
    const auto logits = model.forward(prompt, &alone.back(), true);
    const std::vector<float> want(prefill_want.begin() + row * vocab, prefill_want.begin() + (row + 1) * vocab);
    INFO(name << ", prompt " << row << " prefilled alone");
    CHECK(relative_error(logits.values, want) < kTolerance);
  }
  // ... then one batch: a chunk of 3 tokens per row from positions 5 and 11, then steps.
  auto state = model.make_state(2);
  state.copy_row(alone[0], 0, 0);
  state.copy_row(alone[1], 0, 1);
  INFO(name);
  CHECK(state.positions() == std::vector<std::int64_t>{5, 11});
  const auto chunk = tokens_named(expected, "ragged.chunk");
  const double chunk_error =
      relative_error(model.forward(chunk, &state).values, expected.read_f32("ragged.chunk_logits"));
  const auto steps = tokens_named(expected, "ragged.steps");  // (steps, B)
  const auto steps_want = expected.read_f32("ragged.step_logits");
  double step_error = 0.0;
  for (std::int64_t s = 0; s < steps.batch; ++s) {
    const std::vector<std::int32_t> ids(steps.ids.begin() + s * 2, steps.ids.begin() + (s + 1) * 2);
    const std::vector<float> want(steps_want.begin() + s * 2 * vocab, steps_want.begin() + (s + 1) * 2 * vocab);
    step_error = std::max(step_error, relative_error(model.step(ids, state).values, want));
  }
  INFO("max relative logit error: chunk " << chunk_error << ", steps " << step_error);
  CHECK(chunk_error < kTolerance);
  CHECK(step_error < kTolerance);
  const std::int64_t added = chunk.length + steps.batch;
  CHECK(state.positions() == std::vector<std::int64_t>{5 + added, 11 + added});
}

TEST_CASE("greedy generation of a ragged hybrid batch equals generating each prompt alone") {
  const std::string name = GENERATE(from_range(kHybrids));
  const Reference reference(name);
  auto model = load(name);
  const auto& ids = reference.tokens.ids;
  const std::vector<std::vector<std::int32_t>> prompts = {
      {ids.begin(), ids.begin() + 3}, {ids.begin() + kLongest, ids.begin() + kLongest + 12}};
  mambakit::GenerationOptions options;
  options.max_new_tokens = 10;
  options.sampling.temperature = 0.0;
  const auto together = mambakit::generate(model, prompts, options);
  for (std::size_t row = 0; row < prompts.size(); ++row) {
    INFO(name << ", row " << row);
    const auto alone = mambakit::generate(model, {prompts[row]}, options);
    CHECK(together.new_tokens[row].size() == 10);
    CHECK(alone.new_tokens[0] == together.new_tokens[row]);
  }
}

TEST_CASE("a hybrid state reports the bytes its KV cache holds per token") {
  const std::string name = GENERATE(from_range(kHybrids));
  const Reference reference(name);
  auto model = load(name);
  auto state = model.make_state(reference.tokens.batch);
  model.forward(reference.tokens, &state);
  const auto info = nlohmann::json::parse(state.info_json());
  INFO(name << ": " << info.dump());
  REQUIRE(info.contains("bytes_per_token"));
  REQUIRE(info.contains("capacity_tokens"));
  CHECK(info.at("bytes_per_token").get<std::size_t>() > 0);
  // Keys and values of num_heads_kv heads, not repeated for the query heads.
  CHECK(info.at("bytes_per_token").get<std::size_t>() ==
        kv_bytes_per_token(read_config(name), reference.tokens.batch));
  CHECK(info.at("capacity_tokens").get<std::int64_t>() >= kLongest);
  CHECK(info.at("bytes").get<std::size_t>() >= kLongest * info.at("bytes_per_token").get<std::size_t>());
}

TEST_CASE("a pure Mamba state keeps its size whatever the tokens processed") {
  const std::string fixture = GENERATE(as<std::string>{}, "mamba2_official", "tiny_tied");
  const auto dir = mambakit::test::data_dir() / "models" / fixture;
  const auto expected = mambakit::SafetensorsFile::open(dir / "expected.safetensors");
  auto model = mambakit::Model::load(dir, mambakit::test::in_tree_plugins());
  const auto tokens = mambakit::test::fixture_tokens(expected, 33);
  auto state = model.make_state(tokens.batch);
  const auto before = nlohmann::json::parse(state.info_json());
  model.forward(tokens, &state);
  model.step(column(tokens, 0), state);
  const auto after = nlohmann::json::parse(state.info_json());
  INFO(fixture << ": " << before.dump() << " then " << after.dump());
  CHECK(after.at("bytes") == before.at("bytes"));
  CHECK(after.at("bytes_per_token") == 0);
  CHECK(after.at("capacity_tokens") == 0);
  CHECK(after.at("seqlen_offset") == 34);
}
