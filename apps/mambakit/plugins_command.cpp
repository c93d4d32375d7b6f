// mambakit plugins: lists every registered component with its plugin file and version.

#include <fmt/format.h>
#include <fmt/std.h>

#include <boost/program_options/value_semantic.hpp>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "command.hpp"
#include "mambakit/error.hpp"

namespace mambakit::cli {

namespace po = boost::program_options;

namespace {

void print_text(const std::vector<ComponentInfo>& components) {
  if (components.empty()) {
    fmt::print("no components: no plugin was loaded\n");
    return;
  }
  for (const auto& info : components) {
    fmt::print("{:<24} {}\n", info.key(), info.help);
    fmt::print("{:<24} from {} {} ({})\n", "", info.plugin_name, info.plugin_version, info.file.string());
  }
}

void print_json(const std::vector<ComponentInfo>& components) {
  auto list = nlohmann::json::array();
  for (const auto& info : components) {
    list.push_back({{"kind", component_kind_name(info.kind)},
                    {"kernel_kind", info.kernel_kind},
                    {"name", info.name},
                    {"key", info.key()},
                    {"help", info.help},
                    {"plugin", info.plugin_name},
                    {"plugin_version", info.plugin_version},
                    {"abi_minor", info.abi_minor},
                    {"file", info.file.string()}});
  }
  fmt::print("{}\n", list.dump(2));
}

}  // namespace

int plugins_main(int argc, char** argv) {
  po::options_description options;
  options.add_options()("format", po::value<std::string>()->default_value("text"), "output format: text or json");
  add_plugin_options(options);
  po::variables_map values;
  int exit_code = 0;
  if (!parse_command_line(argc, argv, "mambakit plugins [--format text|json] [--plugin-dir DIR]...", options,
                          values, exit_code)) {
    return exit_code;
  }
  const std::string format = values["format"].as<std::string>();
  if (format != "text" && format != "json") {
    throw Error(fmt::format("--format must be text or json, got '{}'", format));
  }
  const auto host = load_plugins(values);
  const auto components = host->components();
  if (format == "json") {
    print_json(components);
  } else {
    print_text(components);
  }
  return 0;
}

}  // namespace mambakit::cli
