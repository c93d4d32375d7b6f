// mambakit tokenize: a model folder's tokenizer, text to ids (--text) or ids to text (--ids).

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <boost/program_options/value_semantic.hpp>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "command.hpp"
#include "mambakit/error.hpp"
#include "mambakit/tokenizer.hpp"

namespace mambakit::cli {

namespace po = boost::program_options;

int tokenize_main(int argc, char** argv) {
  po::options_description options;
  options.add_options()("model", po::value<std::string>(), "model folder (tokenizer.json or byte_tokenizer); "
                                                           "default: the bundled model")(
      "text", po::value<std::string>(), "text to encode into ids")(
      "ids", po::value<std::string>(), "ids to decode into text: a JSON list of integers")(
      "format", po::value<std::string>()->default_value("text"), "output format: text or json");
  po::variables_map values;
  int exit_code = 0;
  if (!parse_command_line(argc, argv, "mambakit tokenize [--model DIR] (--text TEXT | --ids JSON) [--format text|json]",
                          options, values, exit_code)) {
    return exit_code;
  }
  const std::string format = values["format"].as<std::string>();
  if (format != "text" && format != "json") throw Error(fmt::format("--format must be text or json, got '{}'", format));
  if ((values.count("text") != 0) == (values.count("ids") != 0)) throw Error("give exactly one of --text and --ids");
  const std::filesystem::path model_dir = resolve_model_dir(values);
  const auto tokenizer = load_model_tokenizer(model_dir);
  if (!tokenizer) throw Error(fmt::format("{} has no tokenizer (tokenizer.json or byte_tokenizer)", model_dir.string()));
  const auto replace = nlohmann::json::error_handler_t::replace;
  if (values.count("text") != 0) {
    const auto ids = tokenizer->encode(values["text"].as<std::string>());
    if (format == "json") {
      nlohmann::json tokens = nlohmann::json::array();
      for (const auto id : ids) tokens.push_back(tokenizer->token_text(id));
      fmt::print("{}\n", nlohmann::json{{"ids", ids}, {"tokens", tokens}}.dump(-1, ' ', false, replace));
    } else {
      fmt::print("{}\n", nlohmann::json(ids).dump());
    }
    return 0;
  }
  const auto parsed = nlohmann::json::parse(values["ids"].as<std::string>(), nullptr, false);
  const bool ids_ok = parsed.is_array() && std::all_of(parsed.begin(), parsed.end(), [&](const nlohmann::json& id) {
    return id.is_number_integer() && id.get<std::int64_t>() >= 0 && id.get<std::int64_t>() < tokenizer->vocab_size();
  });
  if (!ids_ok) {
    throw Error(fmt::format("--ids {} is invalid: give a JSON list of ids in [0, {})", values["ids"].as<std::string>(),
                            tokenizer->vocab_size()));
  }
  const std::string text = tokenizer->decode(parsed.get<std::vector<std::int32_t>>());
  if (format == "json") {
    fmt::print("{}\n", nlohmann::json{{"text", text}}.dump(-1, ' ', false, replace));
  } else {
    fmt::print("{}\n", text);
  }
  return 0;
}

}  // namespace mambakit::cli
