// mambakit classify and mambakit embed: a text through a classification or feature model.

#include <fmt/format.h>

#include <boost/program_options/value_semantic.hpp>
#include <cmath>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "command.hpp"
#include "mambakit/error.hpp"
#include "mambakit/npy.hpp"
#include "mambakit/tokenizer.hpp"

namespace mambakit::cli {

namespace po = boost::program_options;

namespace {

const char* objective_name(sdk::HeadObjective objective) {
  switch (objective) {
    case sdk::HeadObjective::kNextToken: return "next-token";
    case sdk::HeadObjective::kClassLabels: return "class-label";
    case sdk::HeadObjective::kNone: break;
  }
  return "feature";
}

/// Loads --model, tokenizes --text and runs the model; checks that its head has `objective`.
FloatTensor run_text(const po::variables_map& values, sdk::HeadObjective objective,
                     std::vector<std::string>* class_names = nullptr) {
  const std::filesystem::path model_dir = values["model"].as<std::string>();
  const auto host = load_plugins(values);
  Model model = load_model(values, model_dir, *host);
  if (model.objective() != objective) {
    throw Error(fmt::format("{} has a {} head (head/{}); this command needs a {} head (e.g. head/{})",
                            model_dir.string(), objective_name(model.objective()), model.config().head.name,
                            objective_name(objective),
                            objective == sdk::HeadObjective::kClassLabels ? "classification" : "features"));
  }
  if (class_names != nullptr) *class_names = model.class_names();
  const auto tokenizer = load_model_tokenizer(model_dir);
  if (!tokenizer) throw Error(fmt::format("{} has no tokenizer (tokenizer.json or byte_tokenizer)", model_dir.string()));
  const std::string text = values["text"].as<std::string>();
  const auto ids = tokenizer->encode(text);
  if (ids.empty()) throw Error("--text is empty");
  FloatTensor output = model.forward(TokenBatch{1, static_cast<std::int64_t>(ids.size()), ids});
  report_kernels(values, model);
  return output;
}

bool parse_text_command(int argc, char** argv, const char* usage, po::options_description& extra,
                        po::variables_map& values, int& exit_code) {
  po::options_description options;
  add_model_options(options, true);
  options.add_options()("text", po::value<std::string>()->required(), "the input text");
  options.add(extra);
  add_plugin_options(options);
  return parse_command_line(argc, argv, usage, options, values, exit_code);
}

}  // namespace

int classify_main(int argc, char** argv) {
  po::options_description extra;
  extra.add_options()("format", po::value<std::string>()->default_value("text"),
                      "output format: text (a label and its probability per line) or json");
  po::variables_map values;
  int exit_code = 0;
  if (!parse_text_command(argc, argv, "mambakit classify --model DIR --text TEXT [--format text|json]", extra, values,
                          exit_code)) {
    return exit_code;
  }
  const std::string format = values["format"].as<std::string>();
  if (format != "text" && format != "json") throw Error(fmt::format("--format must be text or json, got '{}'", format));
  std::vector<std::string> labels;
  const FloatTensor scores = run_text(values, sdk::HeadObjective::kClassLabels, &labels);
  const float top = *std::max_element(scores.values.begin(), scores.values.end());
  double total = 0.0;
  for (float s : scores.values) total += std::exp(s - top);
  nlohmann::json rows = nlohmann::json::array();
  for (std::size_t c = 0; c < scores.values.size(); ++c) {
    const std::string name = c < labels.size() && !labels[c].empty() ? labels[c] : std::to_string(c);
    const double probability = std::exp(scores.values[c] - top) / total;
    if (format == "text") fmt::print("{}\t{:.6f}\n", name, probability);
    rows.push_back({{"label", name}, {"index", c}, {"probability", probability}, {"score", scores.values[c]}});
  }
  if (format == "json") fmt::print("{}\n", nlohmann::json{{"labels", rows}}.dump());
  return 0;
}

int embed_main(int argc, char** argv) {
  po::options_description extra;
  extra.add_options()("output", po::value<std::string>(), "write the embeddings as float32 .npy instead of printing");
  po::variables_map values;
  int exit_code = 0;
  if (!parse_text_command(argc, argv, "mambakit embed --model DIR --text TEXT [--output FILE.npy]", extra, values,
                          exit_code)) {
    return exit_code;
  }
  const FloatTensor features = run_text(values, sdk::HeadObjective::kNone);
  if (values.count("output") != 0) {
    write_npy_f32(values["output"].as<std::string>(), features.values.data(), features.shape);
    return 0;
  }
  fmt::print("{}\n", nlohmann::json{{"shape", features.shape}, {"values", features.values}}.dump());
  return 0;
}

}  // namespace mambakit::cli
