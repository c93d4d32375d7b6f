// mambakit quantize and eval on the bundled model: the quantized folder runs, generates and
// scores within 1% of f32's bits per byte; eval's result does not depend on its window and the
// decode mode scores what the prefill scores; bad options are clear errors with exit 1.

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "fixtures.hpp"
#include "process.hpp"

using Catch::Matchers::Contains;
using mambakit::test::run_command;
namespace fs = std::filesystem;

namespace {

std::string cli(const std::string& arguments) { return std::string(MAMBAKIT_CLI_PATH) + " " + arguments; }

fs::path bundled_model() { return mambakit::test::data_dir() / ".." / ".." / "models" / "default"; }

/// A few verses of the King James Bible (public domain), the bundled model's kind of text, in
/// a file of the caller's (ctest runs test cases at once).
fs::path verses_file(const std::string& name) {
  const fs::path path = fs::path(MAMBAKIT_TEST_BINARY_DIR) / (name + "_verses.txt");
  std::ofstream(path) << "In the beginning God created the heaven and the earth.\n"
                         "And the earth was without form, and void; and darkness was upon the face of the deep.\n"
                         "And the Spirit of God moved upon the face of the waters.\n"
                         "And God said, Let there be light: and there was light.\n"
                         "And God saw the light, that it was good: and God divided the light from the darkness.\n";
  return path;
}

nlohmann::json eval_json(const std::string& arguments) {
  const auto result = run_command(cli("eval --format json --quiet --threads 2 " + arguments));
  INFO(arguments << ": " << result.errors);
  REQUIRE(result.exit_code == 0);
  return nlohmann::json::parse(result.output);
}

}  // namespace

TEST_CASE("mambakit quantize writes an int8 folder that generates and scores like f32") {
  const fs::path output = fs::path(MAMBAKIT_TEST_BINARY_DIR) / "default_int8";
  fs::remove_all(output);
  const auto quantized = run_command(cli("quantize --model " + bundled_model().string() + " --output " + output.string()));
  INFO(quantized.errors);
  REQUIRE(quantized.exit_code == 0);
  CHECK_THAT(quantized.output, Contains("int8 weights, groups of 128 inputs"));
  CHECK(fs::exists(output / "byte_tokenizer"));
  CHECK(fs::file_size(output / "model.safetensors") < fs::file_size(bundled_model() / "model.safetensors") / 3);

  const fs::path text = verses_file("quantize");
  const auto f32 = eval_json("--model " + bundled_model().string() + " --text-file " + text.string());
  const auto int8 = eval_json("--model " + output.string() + " --text-file " + text.string());
  CHECK(int8.at("weights") == "int8");
  CHECK(f32.at("predicted_tokens") == int8.at("predicted_tokens"));
  const double f32_bpb = f32.at("bits_per_byte"), int8_bpb = int8.at("bits_per_byte");
  INFO("bits per byte: f32 " << f32_bpb << ", int8 " << int8_bpb);
  CHECK(std::fabs(int8_bpb - f32_bpb) < 0.01 * f32_bpb);
  // The decode path (inputs quantized too) as well.
  const auto int8_decode = eval_json("--model " + output.string() + " --mode decode --text-file " + text.string());
  CHECK(std::fabs(int8_decode.at("bits_per_byte").get<double>() - f32_bpb) < 0.01 * f32_bpb);

  const auto generated = run_command(cli("generate --model " + output.string() +
                                         " --prompt \"In the beginning\" --max-new-tokens 24 --temperature 0"));
  INFO(generated.errors);
  CHECK(generated.exit_code == 0);
  CHECK_THAT(generated.output, Contains("In the beginning"));
}

TEST_CASE("mambakit eval: bits per byte and perplexity agree with its NLL, in any window and in decode") {
  const fs::path text = verses_file("eval");
  const auto whole = eval_json("--model " + bundled_model().string() + " --text-file " + text.string());
  const auto windows = eval_json("--model " + bundled_model().string() + " --window 7 --text-file " + text.string());
  const auto decoded = eval_json("--model " + bundled_model().string() + " --mode decode --text-file " + text.string());
  const double nll = whole.at("nll_per_token");
  CHECK(windows.at("nll_per_token").get<double>() == Approx(nll).epsilon(1e-6));
  CHECK(decoded.at("nll_per_token").get<double>() == Approx(nll).epsilon(1e-5));
  CHECK(whole.at("perplexity").get<double>() == Approx(std::exp(nll)));
  // Byte tokens: every token is one byte, so bits per byte = nats per token / ln 2.
  CHECK(whole.at("predicted_tokens") == whole.at("predicted_bytes"));
  CHECK(whole.at("bits_per_byte").get<double>() == Approx(nll / std::log(2.0)));
  CHECK(whole.at("windows") == 1);
  CHECK(windows.at("windows").get<int>() == (whole.at("predicted_tokens").get<int>() + 6) / 7);
}

TEST_CASE("mambakit quantize and eval reject bad input with a message and exit code 1") {
  const std::string model = " --model " + bundled_model().string();
  const fs::path output = fs::path(MAMBAKIT_TEST_BINARY_DIR) / "never_quantized";
  const struct {
    std::string arguments, message;
  } cases[] = {
      {"quantize" + model + " --output " + output.string() + " --group-size 48", "--group-size 48 is invalid"},
      {"quantize" + model + " --output " + output.string() + " --scheme int4", "--scheme int4 is invalid"},
      {"quantize" + model + " --output " + bundled_model().string(), "is the --model folder"},
      {"eval" + model + " --text-file /nonexistent/text.txt", "/nonexistent/text.txt: cannot open the text file"},
      {"eval" + model + " --text-file " + verses_file("errors").string() + " --window 0", "--window must be >= 1"},
      {"eval" + model + " --text-file " + verses_file("errors").string() + " --mode sample", "--mode must be prefill or decode"},
      {"eval" + model + " --text-file " + verses_file("errors").string() + " --dtype int4", "--dtype int4 is invalid"},
  };
  for (const auto& bad : cases) {
    const auto result = run_command(cli(bad.arguments));
    INFO(bad.arguments << ": " << result.errors);
    CHECK(result.exit_code == 1);
    CHECK_THAT(result.errors, Contains(bad.message));
  }
  CHECK_FALSE(fs::exists(output));
}
