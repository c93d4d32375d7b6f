// The trainer: a run that is stopped and resumed gives exactly the losses and weights of an
// uninterrupted run; checkpoints and the final model load back; bad run configs are errors.

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fixtures.hpp"
#include "mambakit/error.hpp"
#include "mambakit/model.hpp"
#include "mambakit/safetensors.hpp"
#include "mambakit/trainer.hpp"
#include "test_files.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

fs::path write_corpus(const fs::path& dir) {
  std::ofstream out(dir / "corpus.txt");
  for (int i = 0; i < 200; ++i) out << "In the beginning was the word " << i % 7 << ", and the word was with mambakit.\n";
  return dir / "corpus.txt";
}

/// The tiny Mamba-1 model of the runs below, in mambakit's first config format.
constexpr const char* kMamba1Model = R"({"task": "causal_lm", "d_model": 16, "n_layer": 2, "d_state": 4, "vocab_size": 257})";
/// A tiny Mamba-2 model: 4 heads of 8 in 2 groups.
constexpr const char* kMamba2Model = R"({"format": "mambakit-2", "d_model": 16, "n_layer": 2, "vocab_size": 257,
    "mixer": {"name": "mamba2", "options": {"head_dim": 8, "d_state": 8, "n_groups": 2}}, "head": "lm"})";

mambakit::RunConfig tiny_run(const fs::path& dir, const std::string& model = kMamba1Model) {
  const std::string json = fmt::format(R"({{
    "model": {},
    "train_data": "{}", "tokenizer": "byte", "seq_len": 32, "batch_size": 2, "grad_accum": 2,
    "steps": 8, "lr": 0.01, "min_lr": 0.001, "warmup": 2, "eval_every": 4, "eval_batches": 2,
    "save_every": 100, "log_every": 1, "output_dir": "{}", "seed": 7, "threads": 1}})",
                                       model, write_corpus(dir).string(), (dir / "run").string());
  return mambakit::parse_run_config(json, "tiny run");
}

std::vector<double> losses(const fs::path& metrics) {
  std::vector<double> values;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) values.push_back(nlohmann::json::parse(line).at("loss").get<double>());
  return values;
}

}  // namespace

TEST_CASE("a stopped and resumed run reproduces an uninterrupted one bit for bit, Mamba-1 and Mamba-2") {
  const auto& host = mambakit::test::in_tree_plugins();
  const std::string model_json = GENERATE(std::string(kMamba1Model), std::string(kMamba2Model));
  INFO(model_json);
  std::atomic<bool> never{false};
  const fs::path straight_dir = mambakit::test::scratch_dir("straight");
  const auto straight = tiny_run(straight_dir, model_json);
  REQUIRE(mambakit::train(straight, host, false, never, [](const std::string&) {}));

  const fs::path resumed_dir = mambakit::test::scratch_dir("resumed");
  const auto resumed = tiny_run(resumed_dir, model_json);
  std::atomic<bool> stop{false};
  const bool finished = mambakit::train(resumed, host, false, stop, [&](const std::string& line) {
    if (line.rfind("step 3/", 0) == 0) stop = true;  // as Ctrl-C would, after step 3
  });
  CHECK_FALSE(finished);
  REQUIRE(fs::exists(resumed_dir / "run" / "checkpoint" / "optimizer.safetensors"));
  std::atomic<bool> no_stop{false};
  REQUIRE(mambakit::train(resumed, host, true, no_stop, [](const std::string&) {}));

  const auto expected = losses(straight_dir / "run" / "metrics.jsonl");
  REQUIRE(expected.size() == 8);
  CHECK(losses(resumed_dir / "run" / "metrics.jsonl") == expected);
  CHECK(expected.back() < expected.front());
  const auto a = mambakit::SafetensorsFile::open(straight_dir / "run" / "model" / "model.safetensors");
  const auto b = mambakit::SafetensorsFile::open(resumed_dir / "run" / "model" / "model.safetensors");
  for (const auto& entry : a.entries()) CHECK(a.read_f32(entry.name) == b.read_f32(entry.name));

  auto model = mambakit::Model::load(straight_dir / "run" / "model", host);
  CHECK(fs::exists(straight_dir / "run" / "model" / "byte_tokenizer"));
  CHECK(model.parameter_count() > 0);
}

TEST_CASE("bad run configs are errors naming the key") {
  auto error_of = [](const std::string& json) {
    try {
      mambakit::parse_run_config(json, "run.json");
    } catch (const mambakit::Error& error) {
      return std::string(error.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(error_of(R"({"train_data": "x.txt"})"), Contains("model"));
  CHECK_THAT(error_of(R"({"model": {}, "train_data": "x.txt", "seq_len": 1})"), Contains("seq_len = 1"));
  CHECK_THAT(error_of(R"({"model": {}, "train_data": "x.txt", "lr": -1})"), Contains("lr"));
  CHECK_THAT(error_of(R"({"model": {}, "train_data": "x.txt", "stepz": 3})"), Contains("unknown key \"stepz\""));
  CHECK_THAT(error_of(R"({"model": {}, "train_data": "x.txt", "save_dtype": "f8"})"), Contains("save_dtype = f8"));
  CHECK_THAT(error_of(R"({"model": {}, "train_data": "x.txt", "device": "gpu"})"), Contains("device = gpu"));
  CHECK(mambakit::parse_run_config(R"({"model": {}, "train_data": "x.txt"})", "run.json").device == "cpu");
  CHECK(mambakit::parse_run_config(R"({"model": {}, "train_data": "x.txt", "device": "cuda:1"})", "run.json").device ==
        "cuda:1");
  CHECK(mambakit::apply_overrides(R"({"steps": 5})", {"steps=9", "output_dir=runs/x"}) ==
        R"({"output_dir":"runs/x","steps":9})");
  CHECK_THROWS_WITH(mambakit::apply_overrides("{}", {"novalue"}), Contains("novalue"));
}

TEST_CASE("a classification run trains on JSONL and reports validation accuracy") {
  const auto& host = mambakit::test::in_tree_plugins();
  const fs::path dir = mambakit::test::scratch_dir("classification");
  {
    std::ofstream out(dir / "train.jsonl");
    for (int i = 0; i < 64; ++i) {
      const bool loud = i % 2 == 0;
      out << nlohmann::json{{"text", loud ? "GREAT WONDERFUL SUPER" + std::to_string(i) : "bad awful poor " + std::to_string(i)},
                            {"label", loud ? "loud" : "quiet"}}
                 .dump()
          << "\n";
    }
  }
  const std::string json = fmt::format(R"({{
    "model": {{"task": "sequence_classification", "d_model": 16, "n_layer": 1, "d_state": 4, "vocab_size": 257,
               "num_labels": 2, "pooling": "mean", "labels": ["quiet", "loud"], "dropout": 0.1}},
    "train_data": "{}", "valid_fraction": 0.25, "tokenizer": "byte", "seq_len": 32, "batch_size": 8,
    "steps": 30, "lr": 0.01, "min_lr": 0.001, "warmup": 3, "eval_every": 30, "save_every": 100, "log_every": 10,
    "output_dir": "{}", "seed": 3, "threads": 1}})",
                                       (dir / "train.jsonl").string(), (dir / "run").string());
  std::atomic<bool> never{false};
  std::vector<std::string> lines;
  REQUIRE(mambakit::train(mambakit::parse_run_config(json, "classification run"), host, false, never,
                          [&](const std::string& line) { lines.push_back(line); }));
  const auto eval = std::find_if(lines.begin(), lines.end(), [](const auto& l) { return l.rfind("eval step 30", 0) == 0; });
  REQUIRE(eval != lines.end());
  CHECK_THAT(*eval, Contains("accuracy 1.000"));
  auto model = mambakit::Model::load(dir / "run" / "model", host);
  CHECK(model.objective() == mambakit::sdk::HeadObjective::kClassLabels);
  CHECK(model.class_names() == std::vector<std::string>{"quiet", "loud"});
}

TEST_CASE("an LM fine-tunes into a classifier: init_from keeps its backbone, \"head\" gives it a new head") {
  const auto& host = mambakit::test::in_tree_plugins();
  std::atomic<bool> never{false};
  const fs::path lm_dir = mambakit::test::scratch_dir("lm_to_classifier");
  REQUIRE(mambakit::train(tiny_run(lm_dir), host, false, never, [](const std::string&) {}));
  const auto lm = mambakit::Model::load(lm_dir / "run" / "model", host);
  {
    std::ofstream out(lm_dir / "train.jsonl");
    for (int i = 0; i < 32; ++i) {
      out << nlohmann::json{{"text", i % 2 == 0 ? "In the beginning" : "was the word"}, {"label", i % 2}}.dump() << "\n";
    }
  }
  const std::string json = fmt::format(R"({{
    "init_from": "{}", "head": {{"name": "classification", "options": {{"num_labels": 2, "pooling": "mean"}}}},
    "train_data": "{}", "tokenizer": "byte", "seq_len": 32, "batch_size": 4, "steps": 1, "lr": 1e-9, "min_lr": 1e-9,
    "warmup": 0, "eval_every": 1, "save_every": 100, "log_every": 1, "output_dir": "{}", "seed": 3, "threads": 1}})",
                                       (lm_dir / "run" / "model").string(), (lm_dir / "train.jsonl").string(),
                                       (lm_dir / "classifier").string());
  REQUIRE(mambakit::train(mambakit::parse_run_config(json, "fine-tune"), host, false, never, [](const std::string&) {}));
  const auto classifier = mambakit::Model::load(lm_dir / "classifier" / "model", host);
  CHECK(classifier.objective() == mambakit::sdk::HeadObjective::kClassLabels);
  CHECK(classifier.config().head.name == "classification");
  // One step at lr 1e-9 moves the backbone by at most ~1e-9 per weight (AdamW's step is ~lr).
  double largest_change = 0.0;
  for (const auto& parameter : lm.parameters()) {
    const auto before = lm.parameter_values(parameter.name), after = classifier.parameter_values(parameter.name);
    largest_change = std::max(largest_change, mambakit::test::max_abs_difference(before, after));
  }
  CHECK(largest_change < 1e-6);
  CHECK(classifier.parameter_count() == lm.parameter_count() + 2 * 16 + 2);

  CHECK_THROWS_WITH(mambakit::parse_run_config(R"({"model": {}, "init_from": "m", "train_data": "x"})", "run.json"),
                    Contains("not both"));
  CHECK_THROWS_WITH(mambakit::parse_run_config(R"({"model": {}, "head": "lm", "train_data": "x"})", "run.json"),
                    Contains("head") && Contains("init_from"));
}

TEST_CASE("training data errors name the file and line before the run starts, and CSV columns are read by name") {
  const auto& host = mambakit::test::in_tree_plugins();
  std::atomic<bool> never{false};
  const fs::path dir = mambakit::test::scratch_dir("data_errors");
  auto run_on = [&](const std::string& data_file, const std::string& model) {
    const std::string json = fmt::format(R"({{"model": {}, "train_data": "{}", "tokenizer": "byte", "seq_len": 16,
      "batch_size": 2, "steps": 1, "eval_every": 1, "save_every": 100, "log_every": 1, "output_dir": "{}",
      "seed": 3, "threads": 1}})",
                                         model, (dir / data_file).string(), (dir / "run").string());
    return mambakit::train(mambakit::parse_run_config(json, "run.json"), host, false, never, [](const std::string&) {});
  };
  const std::string classifier =
      R"({"task": "sequence_classification", "d_model": 16, "n_layer": 1, "d_state": 4, "vocab_size": 257, "num_labels": 2})";
  // A label past the head's classes: the file and line, and no run folder written.
  std::ofstream(dir / "bad_label.jsonl") << R"({"text": "a", "label": 1})" << "\n" << R"({"text": "b", "label": 5})" << "\n";
  CHECK_THROWS_WITH(run_on("bad_label.jsonl", classifier),
                    Contains("bad_label.jsonl:2") && Contains("label 5 is outside the head's 2 classes"));
  CHECK_FALSE(fs::exists(dir / "run" / "metrics.jsonl"));
  // A CSV whose header puts the label first.
  {
    std::ofstream out(dir / "label_first.csv");
    out << "label,text\n";
    for (int i = 0; i < 8; ++i) out << i % 2 << ",\"text, with a comma " << i << "\"\n";
  }
  CHECK(run_on("label_first.csv", classifier));
  std::ofstream(dir / "unnamed.csv") << "a,b\n1,x\n";
  CHECK_THROWS_WITH(run_on("unnamed.csv", classifier), Contains("unnamed.csv:1") && Contains("text and label"));
  // An empty text corpus is named as the training data.
  std::ofstream(dir / "empty.txt") << "";
  CHECK_THROWS_WITH(run_on("empty.txt", R"({"d_model": 16, "n_layer": 1, "d_state": 4, "vocab_size": 257})"),
                    Contains("empty.txt: train_data has 0 tokens"));
}
