// mambakit check-plugin: runs the conformance checks (mambakit/conformance.hpp) on one mixer or
// head; exit 0 only when every check passes.

#include <fmt/format.h>

#include <boost/program_options/value_semantic.hpp>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "command.hpp"
#include "mambakit/conformance.hpp"
#include "mambakit/error.hpp"

namespace mambakit::cli {

namespace po = boost::program_options;

int check_plugin_main(int argc, char** argv) {
  po::options_description options;
  options.add_options()("component", po::value<std::string>()->required(), "KIND/NAME: mixer/NAME or head/NAME")(
      "options", po::value<std::string>()->default_value("{}"), "the component's options, a JSON object")(
      "d-model", po::value<std::int64_t>()->default_value(8), "d_model of the problem")(
      "format", po::value<std::string>()->default_value("text"), "output format: text or json");
  add_plugin_options(options);
  po::positional_options_description positional;
  positional.add("component", 1);
  po::variables_map values;
  int exit_code = 0;
  if (!parse_command_line(argc, argv,
                          "mambakit check-plugin KIND/NAME [--options JSON] [--d-model N] [--plugin-dir DIR]... "
                          "[--format text|json]",
                          options, values, exit_code, &positional)) {
    return exit_code;
  }
  const std::string format = values["format"].as<std::string>();
  if (format != "text" && format != "json") throw Error(fmt::format("--format must be text or json, got '{}'", format));
  const auto host = load_plugins(values);
  ConformanceSetup setup;
  setup.options = values["options"].as<std::string>();
  setup.d_model = values["d-model"].as<std::int64_t>();
  const std::string key = values["component"].as<std::string>();
  const auto checks = check_component(*host, key, setup);
  std::size_t failed = 0, skipped = 0;
  for (const auto& check : checks) {
    failed += check.passed ? 0 : 1;
    skipped += check.skipped ? 1 : 0;
  }
  if (format == "json") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& check : checks) {
      list.push_back({{"name", check.name}, {"passed", check.passed}, {"skipped", check.skipped}, {"detail", check.detail}});
    }
    const nlohmann::json report = {{"component", key},       {"options", setup.options}, {"d_model", setup.d_model},
                                   {"batch", setup.batch},   {"length", setup.length},   {"checks", list},
                                   {"passed", failed == 0}};
    fmt::print("{}\n", report.dump(2));
  } else {
    fmt::print("check-plugin {} (d_model {}, batch {}, length {}, options {})\n", key, setup.d_model, setup.batch,
               setup.length, setup.options);
    for (const auto& check : checks) {
      fmt::print("  {:<5} {}\n        {}\n", check.skipped ? "SKIP" : check.passed ? "PASS" : "FAIL", check.name,
                 check.detail);
    }
    fmt::print("{}: {} checks, {} failed, {} skipped\n", failed == 0 ? "conforms" : "does not conform", checks.size(),
               failed, skipped);
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace mambakit::cli
