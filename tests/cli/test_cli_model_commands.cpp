// The model commands of the CLI on the fixture checkpoints: forward writes logits equal to the
// PyTorch reference; generate, info and grad run; classify and embed print what the library
// computes; bad input is a clear error with exit 1.

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <cmath>
#include <set>
#include <sstream>
#include <string>

#include "fixtures.hpp"
#include "mambakit/model.hpp"
#include "mambakit/npy.hpp"
#include "mambakit/safetensors.hpp"
#include "process.hpp"
#include "test_files.hpp"

using Catch::Matchers::Contains;
using mambakit::test::run_command;
namespace fs = std::filesystem;

namespace {

std::string cli(const std::string& arguments) { return std::string(MAMBAKIT_CLI_PATH) + " " + arguments; }

fs::path fixture(const std::string& name) { return mambakit::test::data_dir() / "models" / name; }

fs::path write_file(const std::string& name, const std::string& text) {
  const fs::path path = fs::path(MAMBAKIT_TEST_BINARY_DIR) / name;
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST_CASE("mambakit forward writes the reference logits as a float32 .npy [B, L, V]") {
  const auto expected = mambakit::SafetensorsFile::open(fixture("tiny_tied") / "expected.safetensors");
  const auto tokens = expected.read_f32("tokens.L7");
  nlohmann::json rows = nlohmann::json::array();
  for (int b = 0; b < 2; ++b) {
    rows.push_back(nlohmann::json::array());
    for (int t = 0; t < 7; ++t) rows.back().push_back(static_cast<int>(tokens[b * 7 + t]));
  }
  const auto input = write_file("tokens.json", rows.dump());
  const fs::path output = fs::path(MAMBAKIT_TEST_BINARY_DIR) / "logits.npy";
  for (const std::string scan : {"--scan sequential", "--kernel selective_scan=fused", "--scan chunked",
                                 "--kernel selective_scan=auto"}) {
    const auto result = run_command(cli("forward --model " + fixture("tiny_tied").string() + " --input " +
                                        input.string() + " --output " + output.string() + " --verbose " + scan));
    INFO(scan << ": " << result.errors);
    REQUIRE(result.exit_code == 0);
    // --verbose names the kernel each choice gave, for the (B, L, E, N) problem it ran.
    const std::string chosen = scan.substr(scan.find_last_of(" =") + 1);
    CHECK_THAT(result.errors, Contains("kernel selective_scan/" + (chosen == "auto" ? std::string("fused") : chosen) +
                                       " for f32 cpu [2, 7, 32, 4]"));
    std::vector<std::int64_t> shape;
    const auto logits = mambakit::read_npy_f32(output, &shape);
    CHECK(shape == std::vector<std::int64_t>{2, 7, 40});
    CHECK(mambakit::test::max_abs_difference(logits, expected.read_f32("logits.L7")) < 1e-4);
  }
}

TEST_CASE("mambakit forward rejects bad input with a message and exit code 1") {
  const std::string model = "--model " + fixture("tiny_tied").string();
  const std::string out = " --output " + (fs::path(MAMBAKIT_TEST_BINARY_DIR) / "never.npy").string();
  struct Case {
    const char* file_text;
    const char* message;
  };
  for (const Case& c : {Case{"[[1, 2, 3], [4, 5]]", "row 1 has 2 tokens but row 0 has 3"},
                        Case{"[[1, 2, 99]]", "token id 99 at row 0, position 2"}, Case{"[]", "non-empty"},
                        Case{"[[1, -2]]", "position 1: -2 is not a token id"}, Case{"{\"a\": 1", "not valid JSON"}}) {
    const auto input = write_file("bad.json", c.file_text);
    const auto result = run_command(cli("forward " + model + " --input " + input.string() + out));
    INFO(c.file_text);
    CHECK(result.exit_code == 1);
    CHECK_THAT(result.errors, Contains(c.message));
  }
  const auto missing = run_command(cli("forward " + model + " --input /nonexistent/tokens.json" + out));
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.errors, Contains("/nonexistent/tokens.json"));
  const auto valid = write_file("valid.json", "[[1, 2]]");
  const auto no_model = run_command(cli("forward --model /nonexistent/model --input " + valid.string() + out));
  CHECK(no_model.exit_code == 1);
  CHECK_THAT(no_model.errors, Contains("/nonexistent/model"));
  CHECK(run_command(cli("forward " + model)).exit_code == 2);
  CHECK(!fs::exists(fs::path(MAMBAKIT_TEST_BINARY_DIR) / "never.npy"));
}

TEST_CASE("mambakit generate --format json gives per-row new tokens for ragged prompts") {
  const auto input = write_file("prompts.json", "[[1, 2, 3], [7]]");
  const auto result = run_command(cli("generate --model " + fixture("tiny_untied_bias").string() + " --input " +
                                      input.string() + " --max-new-tokens 5 --temperature 0 --format json"));
  REQUIRE(result.exit_code == 0);
  const auto out = nlohmann::json::parse(result.output);
  REQUIRE(out["new_tokens"].size() == 2);
  CHECK(out["new_tokens"][0].size() == 5);
  CHECK(out["new_tokens"][1].size() == 5);
}

TEST_CASE("mambakit generate --format json writes bytes that are not UTF-8 as U+FFFD and keeps the ids") {
  // The bundled byte-level model at temperature 3 samples bytes that do not form UTF-8 (this
  // aborted the JSON output before); every run must still print JSON with all ids.
  int replaced = 0;
  for (int seed = 1; seed <= 4; ++seed) {
    const auto result = run_command(cli("generate --prompt \"In the\" --max-new-tokens 16 --temperature 3 --seed " +
                                        std::to_string(seed) + " --format json --no-eos"));
    INFO("seed " << seed << ": " << result.errors);
    REQUIRE(result.exit_code == 0);
    const auto out = nlohmann::json::parse(result.output);
    CHECK(out["new_tokens"][0].size() == 16);
    replaced += out["new_text"][0].get<std::string>().find("\xEF\xBF\xBD") != std::string::npos ? 1 : 0;
  }
  CHECK(replaced > 0);
}

TEST_CASE("mambakit generate explains what is missing") {
  const auto no_tokenizer = run_command(cli("generate --model " + fixture("tiny_tied").string() + " --prompt hello"));
  CHECK(no_tokenizer.exit_code == 1);
  CHECK_THAT(no_tokenizer.errors, Contains("no tokenizer"));
  const auto both = run_command(cli("generate --model " + fixture("tiny_tied").string()));
  CHECK(both.exit_code == 1);
  CHECK_THAT(both.errors, Contains("exactly one of --prompt"));
  const auto input = write_file("one.json", "[[1]]");
  const auto bad_temperature = run_command(cli("generate --model " + fixture("tiny_tied").string() + " --input " +
                                               input.string() + " --temperature -1"));
  CHECK(bad_temperature.exit_code == 1);
  CHECK_THAT(bad_temperature.errors, Contains("temperature"));
}

TEST_CASE("mambakit info and grad run on a checkpoint") {
  const auto info = run_command(cli("info --format json --model " + fixture("tiny_untied_bias").string()));
  REQUIRE(info.exit_code == 0);
  const auto parsed = nlohmann::json::parse(info.output);
  CHECK(parsed["d_model"] == 24);
  CHECK(parsed["n_layer"] == 3);
  CHECK(parsed["head"] == "lm");
  CHECK(parsed["layers"][2]["mixer"] == "s6");
  CHECK(parsed["kernels"][0]["name"] == "fused");
  const auto bad_kernel = run_command(cli("info --kernel selective_scan=warp --model " + fixture("tiny_untied_bias").string()));
  CHECK(bad_kernel.exit_code == 1);
  CHECK_THAT(bad_kernel.errors, Contains("unknown selective_scan kernel 'warp'"));

  const auto input = write_file("grad_tokens.json", "[[1, 2, 3, 4], [5, 6, 7, 8]]");
  const fs::path output = fs::path(MAMBAKIT_TEST_BINARY_DIR) / "grads.safetensors";
  const auto grad = run_command(cli("grad --model " + fixture("tiny_tied").string() + " --input " + input.string() +
                                    " --output " + output.string()));
  REQUIRE(grad.exit_code == 0);
  const auto grads = mambakit::SafetensorsFile::open(output);
  CHECK(grads.find("backbone.embeddings.weight") != nullptr);
  CHECK(grads.find("lm_head.weight") == nullptr);
  CHECK(grads.find("backbone.layers.1.mixer.A_log") != nullptr);
}

TEST_CASE("mambakit bench runs every CPU scan backend and weight dtype, and rejects bad options") {
  const auto result = run_command(cli("bench --shape tiny --mode both --length 8 --decode-tokens 2 --repeat 1 "
                                      "--threads 1 --dtype f32,bf16,int8 --format json"));
  INFO(result.errors);
  REQUIRE(result.exit_code == 0);
  const auto rows = nlohmann::json::parse(result.output);
  std::set<std::string> scans, dtypes, modes;
  for (const auto& row : rows) {
    scans.insert(row.at("scan").get<std::string>());
    dtypes.insert(row.at("dtype").get<std::string>());
    modes.insert(row.at("mode").get<std::string>());
    CHECK(row.at("tokens_per_s").get<double>() > 0.0);
  }
  CHECK(scans == std::set<std::string>{"chunked", "fused", "sequential"});  // no GPU backend on the CPU
  CHECK(dtypes == std::set<std::string>{"bf16", "f32", "int8"});
  CHECK(modes == std::set<std::string>{"decode", "prefill"});
  CHECK(rows.size() == 3 * 3 * 2);
  // --threads 0 means all available, as elsewhere; --verbose names the kernels each case got.
  const auto all_threads = run_command(cli("bench --shape tiny --length 8 --repeat 1 --threads 0 --scan fused --verbose"));
  INFO(all_threads.errors);
  CHECK(all_threads.exit_code == 0);
  CHECK_THAT(all_threads.errors, Contains("kernel selective_scan/fused for f32 cpu [1, 8, 128, 16]"));
  // A named kernel that cannot run here points at --device.
  const auto input = write_file("scan_cuda_tokens.json", "[[1, 2, 3]]");
  const auto on_cpu = run_command(cli("forward --model " + fixture("tiny_tied").string() + " --input " + input.string() +
                                      " --output " + (fs::path(MAMBAKIT_TEST_BINARY_DIR) / "never_cuda.npy").string() +
                                      " --scan cuda"));
  CHECK(on_cpu.exit_code == 1);
  // (A build without CUDA has no such kernel at all.)
  CHECK_THAT(on_cpu.errors, (Contains("'cuda' was named") && Contains("--device")) ||
                                Contains("unknown selective_scan kernel 'cuda'"));

  const auto bad_dtype = run_command(cli("bench --shape tiny --dtype f8"));
  CHECK(bad_dtype.exit_code == 1);
  CHECK_THAT(bad_dtype.errors, Contains("--dtype") && Contains("f8"));
  const auto train_half = run_command(cli("bench --shape tiny --mode train --dtype bf16"));
  CHECK(train_half.exit_code == 1);
  CHECK_THAT(train_half.errors, Contains("--mode train needs --dtype f32"));
}

namespace {

/// A randomly initialised task model saved with the byte-level tokenizer, and its in-memory copy.
mambakit::Model saved_task_model(const mambakit::ModelConfig& config, const fs::path& dir) {
  mambakit::ModelOptions options;
  options.seed = 11;
  mambakit::Model model = mambakit::Model::create(config, mambakit::test::in_tree_plugins(), options);
  model.save(dir);
  std::ofstream(dir / "byte_tokenizer") << "byte-level: ids 0-255 are bytes, 256 is <|endoftext|>\n";
  return model;
}

/// The byte tokenizer's ids of ASCII `text`: its bytes.
mambakit::TokenBatch byte_ids(const std::string& text) {
  return mambakit::TokenBatch{1, static_cast<std::int64_t>(text.size()), std::vector<std::int32_t>(text.begin(), text.end())};
}

mambakit::ModelConfig tiny_task_config(const std::string& head, const std::string& head_options) {
  mambakit::ModelConfig config;
  config.d_model = 16;
  config.n_layer = 2;
  config.mixer = {"s6", R"({"d_state": 4})"};
  config.head = {head, head_options};
  config.vocab_size = 257;
  return config;
}

}  // namespace

TEST_CASE("mambakit classify prints each label's probability and embed prints or writes the pooled features") {
  const std::string text = "In the beginning";
  const std::vector<std::string> labels = {"law", "poetry", "prophecy"};
  auto classifier_config =
      tiny_task_config("classification", R"({"num_labels": 3, "labels": ["law", "poetry", "prophecy"]})");
  const fs::path classifier_dir = mambakit::test::scratch_dir("cli_classifier");
  mambakit::Model classifier = saved_task_model(classifier_config, classifier_dir);
  // softmax of the library's scores for the same bytes
  const auto scores = classifier.forward(byte_ids(text)).values;
  REQUIRE(scores.size() == 3);
  double total = 0.0;
  for (float s : scores) total += std::exp(static_cast<double>(s));

  const auto classified = run_command(cli("classify --model " + classifier_dir.string() + " --text \"" + text + "\""));
  INFO(classified.errors);
  REQUIRE(classified.exit_code == 0);
  std::istringstream lines(classified.output);
  double sum = 0.0;
  for (std::size_t c = 0; c < 3; ++c) {
    std::string label;
    double probability = -1.0;
    REQUIRE(lines >> label >> probability);
    CHECK(label == labels[c]);
    CHECK(std::abs(probability - std::exp(static_cast<double>(scores[c])) / total) < 2e-6);
    sum += probability;
  }
  CHECK(std::abs(sum - 1.0) < 1e-5);
  const auto as_json = run_command(cli("classify --format json --model " + classifier_dir.string() + " --text \"" +
                                       text + "\""));
  REQUIRE(as_json.exit_code == 0);
  const auto classified_json = nlohmann::json::parse(as_json.output);
  REQUIRE(classified_json["labels"].size() == 3);
  CHECK(classified_json["labels"][1]["label"] == "poetry");
  CHECK(std::abs(classified_json["labels"][1]["probability"].get<double>() -
                 std::exp(static_cast<double>(scores[1])) / total) < 2e-6);

  auto features_config = tiny_task_config("features", R"({"pooling": "mean"})");
  const fs::path features_dir = mambakit::test::scratch_dir("cli_features");
  mambakit::Model extractor = saved_task_model(features_config, features_dir);
  const auto expected = extractor.forward(byte_ids(text));
  REQUIRE(expected.shape == std::vector<std::int64_t>{1, 16});

  const auto printed = run_command(cli("embed --model " + features_dir.string() + " --text \"" + text + "\""));
  INFO(printed.errors);
  REQUIRE(printed.exit_code == 0);
  const auto json = nlohmann::json::parse(printed.output);
  CHECK(json["shape"] == nlohmann::json::array({1, 16}));
  CHECK(mambakit::test::max_abs_difference(json["values"].get<std::vector<float>>(), expected.values) < 1e-6);

  const fs::path npy = fs::path(MAMBAKIT_TEST_BINARY_DIR) / "features.npy";
  const auto written = run_command(cli("embed --model " + features_dir.string() + " --text \"" + text +
                                       "\" --output " + npy.string()));
  REQUIRE(written.exit_code == 0);
  std::vector<std::int64_t> shape;
  CHECK(mambakit::test::max_abs_difference(mambakit::read_npy_f32(npy, &shape), expected.values) < 1e-6);
  CHECK(shape == std::vector<std::int64_t>{1, 16});

  // Each command refuses the other's model, an empty text, and a folder without a tokenizer.
  const auto wrong_task = run_command(cli("classify --model " + features_dir.string() + " --text x"));
  CHECK(wrong_task.exit_code == 1);
  CHECK_THAT(wrong_task.errors, Contains("head/features") && Contains("class-label head"));
  const auto empty = run_command(cli("embed --model " + features_dir.string() + " --text \"\""));
  CHECK(empty.exit_code == 1);
  CHECK_THAT(empty.errors, Contains("--text is empty"));
  fs::remove(classifier_dir / "byte_tokenizer");
  const auto no_tokenizer = run_command(cli("classify --model " + classifier_dir.string() + " --text x"));
  CHECK(no_tokenizer.exit_code == 1);
  CHECK_THAT(no_tokenizer.errors, Contains("has no tokenizer"));
}

TEST_CASE("mambakit runs a Mamba-2 checkpoint: ragged generation as row by row, grad, and cuda refused by name") {
  const std::string model = fixture("mamba2_official").string();
  auto generate = [&](const std::string& name, const std::string& prompts) {
    const auto input = write_file(name, prompts);
    const auto result = run_command(cli("generate --model " + model + " --input " + input.string() +
                                        " --max-new-tokens 6 --temperature 0 --format json"));
    INFO(result.errors);
    REQUIRE(result.exit_code == 0);
    return nlohmann::json::parse(result.output)["new_tokens"];
  };
  const auto ragged = generate("mamba2_ragged.json", "[[1, 2, 3, 4, 5], [7]]");
  CHECK(ragged[0] == generate("mamba2_first.json", "[[1, 2, 3, 4, 5]]")[0]);
  CHECK(ragged[1] == generate("mamba2_second.json", "[[7]]")[0]);

  const auto input = write_file("mamba2_grad_tokens.json", "[[1, 2, 3, 4], [5, 6, 7, 8]]");
  const fs::path output = fs::path(MAMBAKIT_TEST_BINARY_DIR) / "mamba2_grads.safetensors";
  const auto grad = run_command(cli("grad --model " + model + " --input " + input.string() + " --output " +
                                    output.string()));
  REQUIRE(grad.exit_code == 0);
  const auto grads = mambakit::SafetensorsFile::open(output);
  for (const char* name : {"backbone.layers.1.mixer.A_log", "backbone.layers.1.mixer.dt_bias",
                           "backbone.layers.0.mixer.norm.weight", "backbone.layers.0.mixer.conv1d.weight"}) {
    CHECK(grads.find(name) != nullptr);
  }

  const auto on_cuda = run_command(cli("forward --device cuda --model " + model + " --input " + input.string() +
                                       " --output " + (fs::path(MAMBAKIT_TEST_BINARY_DIR) / "never2.npy").string()));
  CHECK(on_cuda.exit_code == 1);
  // A build without CUDA says so first; a CUDA build names the mixer that has no CUDA path.
  CHECK_THAT(on_cuda.errors, Contains("mixer/mamba2 does not run on cuda") || Contains("has no CUDA support"));
}

TEST_CASE("mambakit bench compares the ssd kernels on a Mamba-2 shape") {
  const auto result = run_command(cli("bench --shape mamba2-130m --mode both --length 8 --decode-tokens 2 --repeat 1 "
                                      "--threads 1 --format json"));
  INFO(result.errors);
  REQUIRE(result.exit_code == 0);
  std::set<std::string> kernels;
  for (const auto& row : nlohmann::json::parse(result.output)) kernels.insert(row["scan"].get<std::string>());
  CHECK(kernels == std::set<std::string>{"chunked", "sequential"});
}

TEST_CASE("mambakit refuses weights with NaN unless --allow-nonfinite, which warns naming the tensor") {
  const fs::path dir = fs::path(MAMBAKIT_TEST_BINARY_DIR) / "scratch" / "cli_nonfinite";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path source = fixture("tiny_tied");
  fs::copy_file(source / "config.json", dir / "config.json");
  const auto checkpoint = mambakit::SafetensorsFile::open(source / "model.safetensors");
  std::vector<std::vector<float>> storage;
  std::vector<mambakit::SafetensorsTensor> tensors;
  storage.reserve(checkpoint.entries().size());
  for (const auto& entry : checkpoint.entries()) {
    storage.push_back(checkpoint.read_f32(entry.name));
    if (entry.name == "backbone.layers.1.mixer.dt_proj.bias") storage.back()[0] = std::nanf("");
    tensors.push_back({entry.name, mambakit::sdk::DType::kF32, entry.shape, storage.back().data()});
  }
  mambakit::write_safetensors(dir / "model.safetensors", tensors);
  const auto input = write_file("nonfinite_tokens.json", "[[1, 2, 3]]");
  const std::string command = "forward --model " + dir.string() + " --input " + input.string() + " --output " +
                              (fs::path(MAMBAKIT_TEST_BINARY_DIR) / "nonfinite.npy").string();
  const auto refused = run_command(cli(command));
  CHECK(refused.exit_code == 1);
  CHECK_THAT(refused.errors, Contains("NaN or Inf in backbone.layers.1.mixer.dt_proj.bias (1 values)"));
  const auto allowed = run_command(cli(command + " --allow-nonfinite"));
  CHECK(allowed.exit_code == 0);
  CHECK_THAT(allowed.errors, Contains("warning: backbone.layers.1.mixer.dt_proj.bias holds 1 NaN or Inf values"));
}
