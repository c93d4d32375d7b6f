// The mambakit executable: version, help, errors, and `plugins` in both formats.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "mambakit/sdk/plugin.hpp"
#include "mambakit/version.hpp"
#include "process.hpp"

using Catch::Matchers::Contains;
using mambakit::test::run_command;

namespace {

std::string cli(const std::string& arguments) { return std::string(MAMBAKIT_CLI_PATH) + " " + arguments; }

}  // namespace

TEST_CASE("mambakit --version prints the project version") {
  const auto result = run_command(cli("--version"));
  CHECK(result.exit_code == 0);
  CHECK(result.output == std::string("mambakit ") + mambakit::kVersion + "\n");
}

TEST_CASE("mambakit without a command, or with an unknown one, prints usage and fails") {
  CHECK(run_command(cli("")).exit_code == 2);
  const auto unknown = run_command(cli("frobnicate"));
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.errors, Contains("unknown command 'frobnicate'"));
}

TEST_CASE("every subcommand has --help, even those with required options") {
  const auto help = run_command(cli("plugins --help"));
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.output, Contains("--format") && Contains("--plugin-dir"));
  for (const char* command : {"info", "forward", "generate", "classify", "embed", "train", "grad", "bench",
                              "check-plugin", "set-head", "tokenize"}) {
    const auto answer = run_command(cli(std::string(command) + " --help"));
    INFO(command << ": " << answer.errors);
    CHECK(answer.exit_code == 0);
    CHECK_THAT(answer.output, Contains("usage: mambakit " + std::string(command)));
  }
}

TEST_CASE("mambakit plugins lists the in-tree components as text") {
  const auto result = run_command(cli("plugins"));
  CHECK(result.exit_code == 0);
  CHECK(result.errors.empty());
  CHECK_THAT(result.output, Contains("selective_scan/sequential") && Contains("libmambakit-scan-sequential.so") &&
                                 Contains("config/mamba-hf"));
}

TEST_CASE("mambakit plugins --format json gives kind, name, file, version and help") {
  const auto result = run_command(cli("plugins --format json"));
  REQUIRE(result.exit_code == 0);
  const auto list = nlohmann::json::parse(result.output);
  REQUIRE(list.is_array());
  bool found = false;
  for (const auto& entry : list) {
    if (entry.at("kind") == "kernel" && entry.at("kernel_kind") == "selective_scan" && entry.at("name") == "sequential") {
      found = true;
      CHECK(entry.at("key") == "selective_scan/sequential");
      CHECK(entry.at("abi_minor") == mambakit::sdk::kAbiMinor);
      CHECK(entry.at("plugin_version") == "0.1.0");
      CHECK_THAT(entry.at("file").get<std::string>(), Contains("libmambakit-scan-sequential.so"));
      CHECK_FALSE(entry.at("help").get<std::string>().empty());
    }
  }
  CHECK(found);
}

TEST_CASE("bad options are errors with a non-zero exit") {
  const auto format = run_command(cli("plugins --format xml"));
  CHECK(format.exit_code != 0);
  CHECK_THAT(format.errors, Contains("--format must be text or json, got 'xml'"));
  const auto unknown = run_command(cli("plugins --colour"));
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.errors, Contains("colour"));
}

TEST_CASE("a missing --plugin-dir is an error naming the folder") {
  const auto result = run_command(cli("plugins --plugin-dir /nonexistent/mambakit-plugins"));
  CHECK(result.exit_code == 1);
  CHECK_THAT(result.errors, Contains("--plugin-dir /nonexistent/mambakit-plugins: no such folder"));
}

TEST_CASE("mambakit tokenize turns text into the bundled model's byte ids and back") {
  const auto encoded = run_command(cli("tokenize --text \"In the\""));
  REQUIRE(encoded.exit_code == 0);
  CHECK(nlohmann::json::parse(encoded.output) == nlohmann::json::parse("[73, 110, 32, 116, 104, 101]"));  // the bytes
  const auto as_json = run_command(cli("tokenize --format json --text \"In\""));
  REQUIRE(as_json.exit_code == 0);
  CHECK(nlohmann::json::parse(as_json.output)["tokens"] == nlohmann::json::parse(R"(["I", "n"])"));
  const auto decoded = run_command(cli("tokenize --ids \"[73, 110, 32, 116, 104, 101]\""));
  REQUIRE(decoded.exit_code == 0);
  CHECK(decoded.output == "In the\n");
  const auto both = run_command(cli("tokenize --text x --ids \"[1]\""));
  CHECK(both.exit_code == 1);
  CHECK_THAT(both.errors, Contains("exactly one of --text and --ids"));
  const auto out_of_range = run_command(cli("tokenize --ids \"[999]\""));
  CHECK(out_of_range.exit_code == 1);
  CHECK_THAT(out_of_range.errors, Contains("--ids [999] is invalid") && Contains("[0, 257)"));
}
