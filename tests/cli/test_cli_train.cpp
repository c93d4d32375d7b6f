// `mambakit train` as a process: Ctrl-C (a real SIGINT) saves a checkpoint and exits cleanly
// with status 130, and --resume continues from it; a run killed outright (SIGKILL) leaves its
// last checkpoint intact and loadable.

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "fixtures.hpp"
#include "mambakit/model.hpp"
#include "process.hpp"
#include "test_files.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using mambakit::test::run_command;
using mambakit::test::signal_after;

namespace {

/// A run folder with a corpus and a run config that would train for far longer than a test.
fs::path long_run(const std::string& name) {
  const fs::path dir = mambakit::test::scratch_dir(name);
  const fs::path corpus = mambakit::test::write_corpus(dir, "And the evening and the morning were the day", 300, 9);
  std::ofstream(dir / "run.json") << fmt::format(R"({{
    "model": {{"task": "causal_lm", "d_model": 16, "n_layer": 2, "d_state": 4, "vocab_size": 257}},
    "train_data": "{}", "tokenizer": "byte", "seq_len": 32, "batch_size": 2, "steps": 1000000,
    "lr": 0.01, "warmup": 2, "eval_every": 1000000, "save_every": 2, "log_every": 1,
    "output_dir": "{}", "seed": 3, "threads": 1}})",
                                                corpus.string(), (dir / "run").string());
  return dir;
}

std::vector<std::string> train_command(const fs::path& dir, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {MAMBAKIT_CLI_PATH, "train", "--config", (dir / "run.json").string()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

/// The number in the last "<prefix> N" of `log`, or -1.
long last_number_after(const std::string& log, const std::string& prefix) {
  const std::regex pattern(prefix + " ([0-9]+)");
  long value = -1;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), pattern); it != std::sregex_iterator(); ++it) {
    value = std::stol((*it)[1]);
  }
  return value;
}

/// No staging or temporary entries left beside the run's outputs.
bool no_leftovers(const fs::path& run) {
  for (const auto& entry : fs::recursive_directory_iterator(run)) {
    const std::string name = entry.path().filename().string();
    if (name.find(".tmp") != std::string::npos || name.find("staging") != std::string::npos) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("Ctrl-C during mambakit train saves a checkpoint, exits with 130, and --resume continues") {
  const fs::path dir = long_run("sigint");
  const auto interrupted = signal_after(train_command(dir), "step 5/", SIGINT, 120.0);
  INFO(interrupted.errors);
  REQUIRE(interrupted.exit_code == 130);
  const long stopped_at = last_number_after(interrupted.errors, "stopped at step");
  REQUIRE(stopped_at >= 5);
  CHECK(last_number_after(interrupted.errors, "saved checkpoint at step") == stopped_at);
  const fs::path checkpoint = dir / "run" / "checkpoint";
  for (const char* file : {"config.json", "model.safetensors", "optimizer.safetensors"}) {
    CHECK(fs::exists(checkpoint / file));
  }
  CHECK(no_leftovers(dir / "run"));
  CHECK_NOTHROW(mambakit::Model::load(checkpoint, mambakit::test::in_tree_plugins()));

  // --resume picks up at the next step and runs to the (overridden) end.
  const auto resumed = mambakit::test::run_command(
      fmt::format("{} train --config {} --resume --set steps={}", MAMBAKIT_CLI_PATH, (dir / "run.json").string(),
                  stopped_at + 2));
  INFO(resumed.errors);
  CHECK(resumed.exit_code == 0);
  CHECK_THAT(resumed.errors, Contains(fmt::format("step {}/{}", stopped_at + 1, stopped_at + 2)));
  CHECK(resumed.errors.find(fmt::format("step {}/", stopped_at)) == std::string::npos);
  CHECK(fs::exists(dir / "run" / "model" / "model.safetensors"));
}

TEST_CASE("a mambakit train killed outright keeps its last checkpoint intact") {
  const fs::path dir = long_run("sigkill");
  const auto killed = signal_after(train_command(dir), "saved checkpoint at step 4", SIGKILL, 120.0);
  INFO(killed.errors);
  REQUIRE(killed.exit_code == 128 + SIGKILL);
  const long saved = last_number_after(killed.errors, "saved checkpoint at step");
  REQUIRE(saved >= 4);
  const fs::path checkpoint = dir / "run" / "checkpoint";
  CHECK_NOTHROW(mambakit::Model::load(checkpoint, mambakit::test::in_tree_plugins()));
  // The checkpoint holds the last completed save: the one logged last, or a later one whose
  // log line the kill cut off (a save the kill interrupted leaves the previous one in place).
  // Steps of this tiny model take about a millisecond, so on a loaded machine several more
  // saves may complete between the marker and the kill: any completed save will do.
  const long step = nlohmann::json::parse(std::ifstream(checkpoint / "trainer_state.json")).at("step").get<long>();
  CHECK(step >= saved);
  CHECK(step % 2 == 0);  // save_every
  const auto resumed = mambakit::test::run_command(
      fmt::format("{} train --config {} --resume --set steps={}", MAMBAKIT_CLI_PATH, (dir / "run.json").string(),
                  step + 1));
  INFO(resumed.errors);
  CHECK(resumed.exit_code == 0);
  CHECK_THAT(resumed.errors, Contains(fmt::format("step {}/{}", step + 1, step + 1)));
}

TEST_CASE("a key misspelt in --set is named as the override's, and model with init_from is refused") {
  const fs::path dir = long_run("set_typo");
  const auto typo = run_command(fmt::format("{} train --config {} --set stpes=5", MAMBAKIT_CLI_PATH,
                                            (dir / "run.json").string()));
  CHECK(typo.exit_code == 1);
  CHECK_THAT(typo.errors, Contains("with --set stpes=5") && Contains("unknown key \"stpes\""));
  const auto both = run_command(fmt::format("{} train --config {} --set init_from=models/default", MAMBAKIT_CLI_PATH,
                                            (dir / "run.json").string()));
  CHECK(both.exit_code == 1);
  CHECK_THAT(both.errors, Contains("not both"));
  const auto verbose = run_command(fmt::format("{} train --config {} --set steps=1 --set save_every=1 --verbose",
                                               MAMBAKIT_CLI_PATH, (dir / "run.json").string()));
  INFO(verbose.errors);
  CHECK(verbose.exit_code == 0);
  CHECK_THAT(verbose.errors, Contains("threads, weights f32") && Contains("kernel selective_scan/") &&
                                 Contains("+backward"));
}

TEST_CASE("mambakit train trains a hybrid (Mamba-2, attention, gated MLP, LayerNorm) whose model decodes") {
  const fs::path dir = mambakit::test::scratch_dir("cli_train_hybrid");
  const fs::path corpus = mambakit::test::write_corpus(dir, "And the evening and the morning were the day", 200, 9);
  std::ofstream(dir / "run.json") << fmt::format(R"({{
    "model": {{"format": "mambakit-2", "d_model": 16, "n_layer": 3, "vocab_size": 257, "pad_vocab_size_multiple": 1,
               "norm": "layer", "mixer": {{"name": "mamba2", "options": {{"head_dim": 4, "d_state": 8}}}},
               "layers": {{"1": {{"name": "attention", "options": {{"num_heads": 2, "rotary_emb_dim": 4, "causal": true}}}}}},
               "mlp": {{"name": "gated_mlp", "options": {{"d_intermediate": 24, "multiple_of": 8}}}}, "head": "lm"}},
    "train_data": "{}", "tokenizer": "byte", "seq_len": 32, "batch_size": 4, "steps": 30, "lr": 0.01,
    "warmup": 2, "eval_every": 1000, "save_every": 1000, "log_every": 1, "output_dir": "{}", "seed": 3,
    "threads": 1}})",
                                                corpus.string(), (dir / "run").string());
  const auto trained = run_command(fmt::format("{} train --config {}", MAMBAKIT_CLI_PATH, (dir / "run.json").string()));
  INFO(trained.errors);
  REQUIRE(trained.exit_code == 0);
  // The loss falls: the mean of the last five steps' losses below the first step's.
  std::ifstream metrics(dir / "run" / "metrics.jsonl");
  std::vector<double> losses;
  for (std::string line; std::getline(metrics, line);) losses.push_back(nlohmann::json::parse(line).at("loss").get<double>());
  REQUIRE(losses.size() == 30);
  double last = 0.0;
  for (std::size_t i = losses.size() - 5; i < losses.size(); ++i) last += losses[i] / 5.0;
  CHECK(last < losses.front() - 0.5);
  // The saved model generates, and info reports its KV cache's bytes per token:
  // one attention layer, k and v of 2 heads of 8, f32.
  const std::string model = (dir / "run" / "model").string();
  const auto generated = run_command(fmt::format("{} generate --model {} --prompt 'And the' "
                                                 "--max-new-tokens 8 --no-eos",
                                                 MAMBAKIT_CLI_PATH, model));
  INFO(generated.errors);
  CHECK(generated.exit_code == 0);
  const auto info = run_command(fmt::format("{} info --model {} --format json", MAMBAKIT_CLI_PATH, model));
  REQUIRE(info.exit_code == 0);
  const auto parsed = nlohmann::json::parse(info.output);
  CHECK(parsed.at("norm") == "layer");
  CHECK(parsed.at("mlp").at("name") == "gated_mlp");
  CHECK(parsed.at("state_bytes_per_row_per_token").get<std::int64_t>() == 2 * 2 * 8 * 4);
}
