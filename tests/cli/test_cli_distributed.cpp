// `mpirun -np N mambakit train`: N ranks of grad_accum g against one process with N x g (the
// independent reference is the single-process trainer, whose gradient accumulation involves
// no communication): the same weights and losses bit for bit when N and g are powers of two,
// within 1e-6 otherwise; resume on N ranks; classification; a failing rank ends every rank
// (checkpoints are written by rank 0 alone, atomically, as test_cli_train checks).
// Skipped (with a warning) in builds without MPI or where mpirun is missing.

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "fixtures.hpp"
#include "mambakit/communicator.hpp"
#include "mambakit/model.hpp"
#include "process.hpp"
#include "test_files.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using mambakit::test::read_bytes;
using mambakit::test::run_command;

namespace {

bool mpi_ready() {
  if (!mambakit::built_with_mpi()) {
    WARN("skipped: this build has no MPI");
    return false;
  }
  if (run_command("command -v mpirun").exit_code != 0) {
    WARN("skipped: mpirun is not on PATH");
    return false;
  }
  return true;
}

/// mpirun as the tests start it: CI runs as root, and this machine may have fewer cores than
/// ranks. Ranks run without LeakSanitizer (the asan preset): Open MPI's components, loaded
/// with dlopen and closed at MPI_Finalize, leave allocations whose stacks name no module a
/// suppression could match. The one-process runs of the same tests still check for leaks.
std::string mpirun(int ranks) {
  return fmt::format("mpirun --oversubscribe --allow-run-as-root -x ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 -np {}",
                     ranks);
}

/// `mambakit train` on `ranks` processes (1: started directly, without mpirun).
mambakit::test::ProcessResult train(const fs::path& run_json, int ranks, const std::string& extra) {
  const std::string train = fmt::format("{} train --config {} {}", MAMBAKIT_CLI_PATH, run_json.string(), extra);
  if (ranks == 1) return run_command(train);
  return run_command(fmt::format("{} {}", mpirun(ranks), train));
}

/// train() that must succeed, into `output`; its log when it does not.
mambakit::test::ProcessResult train_into(const fs::path& run_json, int ranks, const fs::path& output,
                                         const std::string& extra = "") {
  auto result = train(run_json, ranks, fmt::format("{} --output-dir {}", extra, output.string()));
  INFO(result.errors);
  REQUIRE(result.exit_code == 0);
  return result;
}

fs::path lm_run(const std::string& name, const std::string& model_json) {
  const fs::path dir = mambakit::test::scratch_dir(name);
  const fs::path corpus = mambakit::test::write_corpus(dir, "In the beginning was the Word, and the Word was", 200, 7);
  std::ofstream(dir / "run.json") << fmt::format(R"({{
    "model": {}, "train_data": "{}", "tokenizer": "byte", "seq_len": 24, "batch_size": 2, "steps": 6,
    "lr": 0.01, "warmup": 2, "eval_every": 3, "eval_batches": 3, "save_every": 3, "log_every": 1, "seed": 5,
    "threads": 1, "bucket_mb": 0.002}})",
                                                 model_json, corpus.string());
  return dir;
}

/// Every tensor of two models folders' weights: max |a - b| / max |b| per tensor.
double largest_relative_difference(const fs::path& a, const fs::path& b) {
  const auto& host = mambakit::test::in_tree_plugins();
  const auto left = mambakit::Model::load(a, host), right = mambakit::Model::load(b, host);
  double worst = 0.0;
  for (const auto& parameter : left.parameters()) {
    const auto x = left.parameter_values(parameter.name), y = right.parameter_values(parameter.name);
    double difference = 0.0, scale = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      difference = std::max(difference, static_cast<double>(std::fabs(x[i] - y[i])));
      scale = std::max(scale, static_cast<double>(std::fabs(y[i])));
    }
    worst = std::max(worst, difference / scale);
  }
  return worst;
}

const char* const kMamba1 = R"({"task": "causal_lm", "d_model": 16, "n_layer": 2, "d_state": 4, "vocab_size": 257})";

}  // namespace

TEST_CASE("2 ranks x grad_accum 2 train the weights and losses of 1 process x grad_accum 4, bit for bit") {
  if (!mpi_ready()) return;
  const fs::path dir = lm_run("mpi_bits", kMamba1);
  train_into(dir / "run.json", 1, dir / "one", "--set grad_accum=4");
  const auto two = train_into(dir / "run.json", 2, dir / "two", "--set grad_accum=2");
  CHECK_THAT(two.errors, Contains("data parallel over 2 ranks (MPI") && Contains("allreduce"));
  // Rank 0 alone logs: each step once.
  CHECK(two.errors.find("step 6/6") == two.errors.rfind("step 6/6"));
  CHECK(read_bytes(dir / "two" / "model" / "model.safetensors") == read_bytes(dir / "one" / "model" / "model.safetensors"));
  CHECK(read_bytes(dir / "two" / "checkpoint" / "optimizer.safetensors") ==
        read_bytes(dir / "one" / "checkpoint" / "optimizer.safetensors"));
  // Losses, gradient norms and the sharded validation losses.
  CHECK(read_bytes(dir / "two" / "metrics.jsonl") == read_bytes(dir / "one" / "metrics.jsonl"));
  CHECK_THAT(read_bytes(dir / "one" / "metrics.jsonl"), Contains("valid_loss"));

  // Resumed on 2 ranks from the step-3 checkpoint of a 2-rank run: the same bits again.
  train_into(dir / "run.json", 2, dir / "resumed", "--set grad_accum=2 --set steps=3");
  const auto second_half = train_into(dir / "run.json", 2, dir / "resumed", "--set grad_accum=2 --resume");
  CHECK_THAT(second_half.errors, Contains("step 4/6"));
  CHECK(read_bytes(dir / "resumed" / "model" / "model.safetensors") ==
        read_bytes(dir / "one" / "model" / "model.safetensors"));
}

TEST_CASE("3 ranks (not a power of two) agree with one process within 1e-6, on Mamba-2 too") {
  if (!mpi_ready()) return;
  const fs::path dir = lm_run("mpi_three", R"({"format": "mambakit-2", "d_model": 16, "n_layer": 2, "vocab_size": 257,
    "mixer": {"name": "mamba2", "options": {"head_dim": 8, "d_state": 8, "n_groups": 2}}, "head": "lm"})");
  train_into(dir / "run.json", 1, dir / "one", "--set grad_accum=3");
  train_into(dir / "run.json", 3, dir / "three");
  CHECK(largest_relative_difference(dir / "three" / "model", dir / "one" / "model") < 1e-6);
  std::ifstream a(dir / "one" / "metrics.jsonl"), b(dir / "three" / "metrics.jsonl");
  std::string line_a, line_b;
  int lines = 0;
  while (std::getline(a, line_a) && std::getline(b, line_b)) {
    const double loss_a = nlohmann::json::parse(line_a).at("loss"), loss_b = nlohmann::json::parse(line_b).at("loss");
    CHECK(std::fabs(loss_a - loss_b) <= 1e-6 * std::fabs(loss_a));
    ++lines;
  }
  CHECK(lines == 6);
}

TEST_CASE("classification fine-tuning on 2 ranks gives one process's classifier") {
  if (!mpi_ready()) return;
  const fs::path dir = mambakit::test::scratch_dir("mpi_classification");
  {
    std::ofstream out(dir / "train.jsonl");
    for (int i = 0; i < 48; ++i) {
      const bool loud = i % 3 == 0;
      out << nlohmann::json{{"text", loud ? "GREAT SUPER " + std::to_string(i) : "quiet calm " + std::to_string(i)},
                            {"label", loud ? 1 : 0}}
                 .dump()
          << "\n";
    }
  }
  std::ofstream(dir / "run.json") << fmt::format(R"({{
    "model": {{"task": "sequence_classification", "d_model": 16, "n_layer": 1, "d_state": 4, "vocab_size": 257,
               "num_labels": 2, "pooling": "mean", "dropout": 0.1}},
    "train_data": "{}", "valid_fraction": 0.25, "tokenizer": "byte", "seq_len": 24, "batch_size": 4,
    "steps": 4, "lr": 0.01, "warmup": 1, "eval_every": 2, "save_every": 4, "log_every": 1, "seed": 2, "threads": 1}})",
                                                 (dir / "train.jsonl").string());
  train_into(dir / "run.json", 1, dir / "one", "--set grad_accum=2");
  const auto two = train_into(dir / "run.json", 2, dir / "two");
  CHECK(read_bytes(dir / "two" / "model" / "model.safetensors") == read_bytes(dir / "one" / "model" / "model.safetensors"));
  CHECK(read_bytes(dir / "two" / "metrics.jsonl") == read_bytes(dir / "one" / "metrics.jsonl"));
  CHECK_THAT(read_bytes(dir / "two" / "metrics.jsonl"), Contains("valid_accuracy"));
}

TEST_CASE("a rank that fails ends every rank with a non-zero exit naming it") {
  if (!mpi_ready()) return;
  const fs::path dir = lm_run("mpi_failure", kMamba1);
  // Rank 0 alone makes the output folder: a file where it goes fails rank 0 while rank 1 goes
  // on into the first step's collective calls and waits there for it.
  std::ofstream(dir / "taken") << "a file, not a folder\n";
  const auto failed = train(dir / "run.json", 2, fmt::format("--output-dir {}", (dir / "taken" / "run").string()));
  INFO(failed.errors);
  CHECK(failed.exit_code != 0);
  CHECK_THAT(failed.errors, Contains("rank 0 of 2: mambakit train: error:") && Contains("taken"));
  CHECK(failed.errors.find("step 1/6") == std::string::npos);
}

TEST_CASE("ranks whose weights drift apart are stopped before a checkpoint, naming the rank") {
  if (!mpi_ready()) return;
  const fs::path dir = lm_run("mpi_drift", kMamba1);
  // MPMD: rank 1 is given another learning rate, so its AdamW steps differ from rank 0's.
  const std::string train = fmt::format("{} train --config {} --output-dir {}", MAMBAKIT_CLI_PATH,
                                        (dir / "run.json").string(), (dir / "run").string());
  const auto drifted = run_command(fmt::format("{} {} : -np 1 {} --set lr=0.02", mpirun(1), train, train));
  INFO(drifted.errors);
  CHECK(drifted.exit_code != 0);
  CHECK_THAT(drifted.errors, Contains("after step 3, rank 1's weights differ from rank 0's"));
  CHECK_FALSE(fs::exists(dir / "run" / "checkpoint"));
}
