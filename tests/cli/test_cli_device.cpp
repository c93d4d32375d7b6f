// --device on the CLI, checks that hold in every build: an unknown device is rejected naming
// the value (train and grad included); cuda with no visible device (CUDA_VISIBLE_DEVICES empty)
// or in a build without CUDA is a clear error and exit 1, never a crash, for the inference
// commands and for train and grad, which accept cuda.

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "fixtures.hpp"
#include "process.hpp"
#include "test_files.hpp"

using Catch::Matchers::Contains;
using mambakit::test::run_command;
namespace fs = std::filesystem;

namespace {

std::string cli(const std::string& arguments) { return std::string(MAMBAKIT_CLI_PATH) + " " + arguments; }

/// The command with every CUDA device hidden from it.
std::string without_gpu(const std::string& arguments) { return "CUDA_VISIBLE_DEVICES= " + cli(arguments); }

std::string model_option() { return "--model " + (mambakit::test::data_dir() / "models" / "tiny_tied").string(); }

std::string token_file() {
  const fs::path path = fs::path(MAMBAKIT_TEST_BINARY_DIR) / "device_tokens.json";
  std::ofstream(path) << "[[1, 2, 3], [4, 5, 6]]";
  return path.string();
}

std::string output_file(const char* name) { return (fs::path(MAMBAKIT_TEST_BINARY_DIR) / name).string(); }

/// A small causal-LM run config (and its corpus) that trains for 2 steps into `name`/run.
std::string run_config(const std::string& name) {
  const fs::path dir = mambakit::test::scratch_dir(name);
  const fs::path corpus = mambakit::test::write_corpus(dir, "In the beginning was the word", 40, 7);
  std::ofstream(dir / "run.json") << R"({"model": {"task": "causal_lm", "d_model": 16, "n_layer": 2, "d_state": 4,)"
                                  << R"( "vocab_size": 257}, "train_data": ")" << corpus.string()
                                  << R"(", "seq_len": 16, "batch_size": 2, "steps": 2, "output_dir": ")"
                                  << (dir / "run").string() << R"(", "threads": 1})";
  return (dir / "run.json").string();
}

}  // namespace

TEST_CASE("an unknown device on the command line is rejected, naming the value") {
  const std::string input = token_file();
  for (const std::string& arguments :
       {"forward " + model_option() + " --input " + input + " --output " + output_file("never.npy") + " --device bogus",
        "generate " + model_option() + " --input " + input + " --max-new-tokens 2 --device bogus",
        std::string("bench --shape tiny --repeat 1 --device bogus"),
        "grad " + model_option() + " --input " + input + " --output " + output_file("never.safetensors") +
            " --device bogus",
        "train --config " + run_config("bogus_device") + " --device bogus",
        "forward " + model_option() + " --input " + input + " --output " + output_file("never.npy") +
            " --device cuda:x"}) {
    const auto result = run_command(cli(arguments));
    INFO(arguments << "\n" << result.errors);
    CHECK(result.exit_code == 1);
    CHECK_THAT(result.errors, Contains("--device") && Contains("is invalid"));
  }
  CHECK_THAT(run_command(cli("forward " + model_option() + " --input " + input + " --output " + output_file("never.npy") +
                             " --device bogus"))
                 .errors,
             Contains("bogus"));
}

TEST_CASE("the cuda device without a usable GPU or CUDA build is a clear error with exit code 1") {
  const std::string input = token_file();
  for (const std::string& arguments :
       {"forward " + model_option() + " --input " + input + " --output " + output_file("never.npy") + " --device cuda",
        "generate " + model_option() + " --input " + input + " --max-new-tokens 2 --temperature 0 --device cuda",
        std::string("bench --shape tiny --repeat 1 --mode both --length 8 --device cuda"),
        "forward " + model_option() + " --input " + input + " --output " + output_file("never.npy") +
            " --device cuda:3"}) {
    const auto result = run_command(without_gpu(arguments));
    INFO(arguments << "\n" << result.errors);
    CHECK(result.exit_code == 1);
    CHECK_THAT(result.errors, Contains("cuda:"));
  }
}

TEST_CASE("train and grad accept --device cuda, and without a usable GPU or CUDA build fail clearly") {
  for (const std::string& arguments :
       {"grad " + model_option() + " --input " + token_file() + " --output " + output_file("never.safetensors") +
            " --device cuda",
        "train --config " + run_config("no_gpu") + " --device cuda",
        "train --config " + run_config("no_gpu_set") + " --set device=cuda:1"}) {
    const auto result = run_command(without_gpu(arguments));
    INFO(arguments << "\n" << result.errors);
    CHECK(result.exit_code == 1);
    CHECK_THAT(result.errors, Contains("was requested") && (Contains("no CUDA device") || Contains("no CUDA support")));
    CHECK_THAT(result.errors, !Contains("does not run on"));
  }
}
