// safetensors: write/read round trips of every dtype, the exact layout, writer errors, and the
// Python-written fixtures in tests/data (names and shapes checked against each config.json).

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io_test_support.hpp"
#include "mambakit/half.hpp"
#include "mambakit/safetensors.hpp"

namespace fs = std::filesystem;
using mambakit::SafetensorsFile;
using mambakit::SafetensorsTensor;
using mambakit::write_safetensors;
using mambakit::sdk::DType;
using mambakit::test::error_message;
using mambakit::test::read_bytes;
using mambakit::test::TempDir;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

std::string bytes_of(const void* data, std::size_t size) {
  return size == 0 ? std::string() : std::string(static_cast<const char*>(data), size);
}

std::vector<std::uint16_t> f16_bits(const std::vector<float>& values) {
  std::vector<std::uint16_t> bits;
  for (const float value : values) bits.push_back(mambakit::f32_to_f16(value));
  return bits;
}

std::vector<std::uint16_t> bf16_bits(const std::vector<float>& values) {
  std::vector<std::uint16_t> bits;
  for (const float value : values) bits.push_back(mambakit::f32_to_bf16(value));
  return bits;
}

}  // namespace

TEST_CASE("safetensors round trip of every dtype, metadata and odd shapes") {
  TempDir dir;
  const fs::path file = dir / "all.safetensors";
  const std::vector<float> f32 = {1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-30f};
  const std::vector<float> small = {1.0f, -0.5f, 65504.0f, 0x1p-24f};  // exact in f16
  const auto f16 = f16_bits(small);
  const std::vector<float> bf = {1.0f, -0.5f, 3.0e38f, 0x1p-133f};
  const auto bf16 = bf16_bits(bf);
  const std::vector<double> f64 = {1.0 / 3.0, -1e10, 2.5, 0.0};
  const std::vector<std::int32_t> i32 = {1, -2, 2147483647, -2147483647 - 1, 0};
  const std::int64_t i64 = -9000000000000000000;
  const std::vector<SafetensorsTensor> tensors = {
      {"zeta.f32", DType::kF32, {2, 3}, f32.data()},
      {"alpha.f16", DType::kF16, {4}, f16.data()},
      {"Beta.bf16", DType::kBF16, {2, 1, 2}, bf16.data()},
      {"gamma.f64", DType::kF64, {2, 2}, f64.data()},
      {"delta.i32", DType::kI32, {5}, i32.data()},
      {"eps.i64", DType::kI64, {}, &i64},
      {"empty", DType::kF32, {0, 3}, nullptr},
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "ünïcode, \"quoted\""}, {"e", ""}};
  write_safetensors(file, tensors, metadata);

  auto opened = SafetensorsFile::open(file);
  // A moved-to object keeps the mapping valid.
  SafetensorsFile st = std::move(opened);
  CHECK(st.path() == file);
  CHECK(st.metadata() == metadata);
  REQUIRE(st.entries().size() == tensors.size());
  std::vector<std::string> names;
  for (const auto& entry : st.entries()) names.push_back(entry.name);
  CHECK(names == std::vector<std::string>{"Beta.bf16", "alpha.f16", "delta.i32", "empty", "eps.i64", "gamma.f64",
                                          "zeta.f32"});

  for (const auto& tensor : tensors) {
    INFO(tensor.name);
    const auto* entry = st.find(tensor.name);
    REQUIRE(entry != nullptr);
    CHECK(entry->dtype == tensor.dtype);
    CHECK(entry->shape == tensor.shape);
    const auto size = static_cast<std::size_t>(entry->numel()) * mambakit::sdk::dtype_size(tensor.dtype);
    CHECK(entry->size_bytes == size);
    CHECK(bytes_of(st.data(*entry), entry->size_bytes) == bytes_of(tensor.data, size));
  }
  CHECK(st.at("eps.i64").numel() == 1);
  CHECK(st.at("empty").numel() == 0);

  CHECK(st.read_f32("zeta.f32") == f32);
  CHECK(st.read_f32("alpha.f16") == small);
  CHECK(st.read_f32("Beta.bf16") == std::vector<float>{1.0f, -0.5f, mambakit::bf16_to_f32(bf16[2]), 0x1p-133f});
  CHECK(st.read_f32("gamma.f64") ==
        std::vector<float>{static_cast<float>(1.0 / 3.0), static_cast<float>(-1e10), 2.5f, 0.0f});
  CHECK(st.read_f32("empty").empty());

  CHECK(st.find("missing") == nullptr);
  CHECK(st.find("zeta") == nullptr);
  const auto missing = error_message([&] { (void)st.at("no.such.tensor"); });
  CHECK_THAT(missing, Contains(file.string()) && Contains("no.such.tensor"));
  const auto integer = error_message([&] { (void)st.read_f32("delta.i32"); });
  CHECK_THAT(integer, Contains(file.string()) && Contains("delta.i32") && Contains("I32"));

  SafetensorsFile other = SafetensorsFile::open(file);
  other = std::move(st);
  CHECK(other.read_f32("zeta.f32") == f32);
}

TEST_CASE("safetensors files have the standard layout: length, padded compact JSON, data in name order") {
  TempDir dir;
  const fs::path file = dir / "layout.safetensors";
  const std::vector<float> a = {1, 2};
  const std::vector<float> b = {3};
  write_safetensors(file, {{"b", DType::kF32, {1}, b.data()}, {"a", DType::kF32, {2}, a.data()}}, {{"k", "v"}});
  const std::string bytes = read_bytes(file);
  REQUIRE(bytes.size() >= 8);
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  const std::string json = R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  const std::string padded = json + std::string((8 - json.size() % 8) % 8, ' ');
  CHECK(header_size == padded.size());
  CHECK(header_size % 8 == 0);
  CHECK(bytes.substr(8, header_size) == padded);
  CHECK(bytes.substr(8 + header_size) == bytes_of(a.data(), 8) + bytes_of(b.data(), 4));

  write_safetensors(file, {});
  CHECK(read_bytes(file) == std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
  CHECK(SafetensorsFile::open(file).entries().empty());
}

TEST_CASE("write_safetensors refuses bad tensors, naming file and tensor, and leaves the file alone") {
  TempDir dir;
  const fs::path file = dir / "keep.safetensors";
  const float one = 1.0f;
  write_safetensors(file, {{"old", DType::kF32, {1}, &one}});
  const std::string before = read_bytes(file);
  const auto check = [&](const std::vector<SafetensorsTensor>& tensors, const std::string& name,
                         const std::string& problem) {
    const auto message = error_message([&] { write_safetensors(file, tensors); });
    CHECK_THAT(message, Contains(file.string()) && Contains(name) && Contains(problem));
    CHECK(read_bytes(file) == before);
  };
  check({{"w", DType::kF32, {1}, &one}, {"w", DType::kF32, {1}, &one}}, "'w'", "twice");
  check({{"neg", DType::kF32, {2, -1}, &one}}, "'neg'", "negative");
  check({{"null", DType::kF32, {3}, nullptr}}, "'null'", "no data");
  check({{"__metadata__", DType::kF32, {1}, &one}}, "__metadata__", "reserved");
  check({{"odd", static_cast<DType>(99), {1}, &one}}, "'odd'", "dtype");
  check({{"huge", DType::kF32, {1LL << 40, 1LL << 40}, &one}}, "'huge'", "overflow");
  CHECK_THAT(error_message([&] { write_safetensors(dir / "no-such-folder" / "x.safetensors", {}); }),
             Contains("no-such-folder"));
}

// ---------------------------------------------------------------------------------------------
// The fixtures written by tools/make_fixtures.py (an independent Python writer).

namespace {

using Shapes = std::map<std::string, std::vector<std::int64_t>>;

// The Hugging Face MambaForCausalLM tensors a config.json implies (see tests/data/README.md).
Shapes expected_shapes(const nlohmann::json& config, bool old_embedding_name) {
  const std::int64_t d = config.at("hidden_size");
  const std::int64_t e = config.at("intermediate_size");
  const std::int64_t n = config.at("state_size");
  const std::int64_t k = config.at("conv_kernel");
  const std::int64_t v = config.at("vocab_size");
  const std::int64_t layers = config.at("num_hidden_layers");
  const auto& rank = config.at("time_step_rank");
  const std::int64_t r = rank.is_string() ? (d + 15) / 16 : rank.get<std::int64_t>();
  const bool use_bias = config.at("use_bias");
  const bool use_conv_bias = config.at("use_conv_bias");

  Shapes shapes;
  shapes[old_embedding_name ? "backbone.embedding.weight" : "backbone.embeddings.weight"] = {v, d};
  for (std::int64_t i = 0; i < layers; ++i) {
    const std::string layer = "backbone.layers." + std::to_string(i) + ".";
    shapes[layer + "norm.weight"] = {d};
    shapes[layer + "mixer.in_proj.weight"] = {2 * e, d};
    if (use_bias) shapes[layer + "mixer.in_proj.bias"] = {2 * e};
    shapes[layer + "mixer.conv1d.weight"] = {e, 1, k};
    if (use_conv_bias) shapes[layer + "mixer.conv1d.bias"] = {e};
    shapes[layer + "mixer.x_proj.weight"] = {r + 2 * n, e};
    shapes[layer + "mixer.dt_proj.weight"] = {e, r};
    shapes[layer + "mixer.dt_proj.bias"] = {e};
    shapes[layer + "mixer.A_log"] = {e, n};
    shapes[layer + "mixer.D"] = {e};
    shapes[layer + "mixer.out_proj.weight"] = {d, e};
    if (use_bias) shapes[layer + "mixer.out_proj.bias"] = {d};
  }
  shapes["backbone.norm_f.weight"] = {d};
  if (!config.at("tie_word_embeddings").get<bool>()) shapes["lm_head.weight"] = {v, d};
  return shapes;
}

DType torch_dtype(const std::string& name) {
  if (name == "float16") return DType::kF16;
  if (name == "bfloat16") return DType::kBF16;
  REQUIRE(name == "float32");
  return DType::kF32;
}

std::vector<fs::path> model_fixture_dirs() {
  std::vector<fs::path> dirs;
  const fs::path root = fs::path(MAMBAKIT_TEST_DATA_DIR) / "models";
  if (fs::is_directory(root)) {
    for (const auto& item : fs::directory_iterator(root)) {
      // The Mamba-1 fixtures, whose names and shapes this file derives from MambaConfig's keys
      // (Mamba-2 ones are checked by loading them, tests/model/test_golden_fixtures.cpp).
      std::ifstream config(item.path() / "config.json");
      if (fs::exists(item.path() / "model.safetensors") && config &&
          nlohmann::json::parse(config).value("model_type", "") == "mamba") {
        dirs.push_back(item.path());
      }
    }
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

}  // namespace

TEST_CASE("the Python-written model fixtures open with the names and shapes their config implies") {
  const auto dirs = model_fixture_dirs();
  if (dirs.empty()) {
    WARN("no model fixtures under " << MAMBAKIT_TEST_DATA_DIR << "/models; run tools/make_fixtures.py");
    return;
  }
  for (const auto& dir : dirs) {
    INFO(dir.string());
    std::ifstream config_stream(dir / "config.json");
    const auto config = nlohmann::json::parse(config_stream);
    const bool old_names = dir.filename() == "tiny_old_names";
    const auto st = SafetensorsFile::open(dir / "model.safetensors");
    CHECK(st.metadata() == std::map<std::string, std::string>{{"format", "pt"}});

    Shapes actual;
    for (const auto& entry : st.entries()) {
      actual[entry.name] = entry.shape;
      CHECK(entry.dtype == torch_dtype(config.at("torch_dtype")));
    }
    CHECK(actual == expected_shapes(config, old_names));

    // Decoding F16/BF16 gives the documented weight scales: A_log = log(1..N) + N(0, 0.05) and
    // norms = 1 + N(0, 0.1).
    const std::int64_t n = config.at("state_size");
    const auto a_log = st.read_f32("backbone.layers.0.mixer.A_log");
    for (std::size_t i = 0; i < a_log.size(); ++i) {
      INFO("A_log[" << i << "]");
      CHECK(std::abs(a_log[i] - std::log(static_cast<float>(i % n + 1))) < 0.3f);
    }
    for (const float w : st.read_f32("backbone.norm_f.weight")) {
      CHECK(std::abs(w - 1.0f) < 0.6f);
    }
    for (const auto& entry : st.entries()) {
      std::vector<float> values(static_cast<std::size_t>(entry.numel()));
      st.read_f32(entry, values.data());
      CHECK(std::all_of(values.begin(), values.end(), [](float x) { return std::isfinite(x); }));
    }

    // expected.safetensors (F32) holds token ids as exact small integers in [0, vocab).
    if (fs::exists(dir / "expected.safetensors")) {
      const auto expected = SafetensorsFile::open(dir / "expected.safetensors");
      const auto tokens = expected.read_f32("tokens.L7");
      CHECK(expected.at("tokens.L7").shape == std::vector<std::int64_t>{2, 7});
      for (const float t : tokens) {
        CHECK(t == std::floor(t));
        CHECK(t >= 0);
        CHECK(t < config.at("vocab_size").get<float>());
      }
    }
  }
}

TEST_CASE("rewriting a Python-written fixture reproduces it byte for byte") {
  const auto dirs = model_fixture_dirs();
  if (dirs.empty()) {
    WARN("no model fixtures; run tools/make_fixtures.py");
    return;
  }
  TempDir temp;
  for (const auto& dir : dirs) {
    INFO(dir.string());
    const auto st = SafetensorsFile::open(dir / "model.safetensors");
    std::vector<SafetensorsTensor> tensors;
    for (const auto& entry : st.entries()) {
      tensors.push_back({entry.name, entry.dtype, entry.shape, st.data(entry)});
    }
    const fs::path copy = temp / (dir.filename().string() + ".safetensors");
    write_safetensors(copy, tensors, st.metadata());
    CHECK(read_bytes(copy) == read_bytes(dir / "model.safetensors"));
  }
}
