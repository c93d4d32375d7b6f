// mambakit eval: how well a language model predicts a text file: the mean negative
// log-likelihood per token, the perplexity, and bits per byte, over the whole file in windows
// that carry the state (score_sequence, evaluation.hpp).

#include <fmt/format.h>

#include <boost/program_options/value_semantic.hpp>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_common.hpp"
#include "command.hpp"
#include "mambakit/error.hpp"
#include "mambakit/evaluation.hpp"
#include "mambakit/tokenizer.hpp"

namespace mambakit::cli {

namespace po = boost::program_options;

namespace {

std::string read_text_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot open the text file", file.string()));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) throw Error(fmt::format("{}: cannot read it", file.string()));
  return text.str();
}

}  // namespace

int eval_main(int argc, char** argv) {
  po::options_description options;
  options.add_options()("text-file", po::value<std::string>()->required(), "the text to score (UTF-8)")(
      "window", po::value<std::int64_t>()->default_value(512),
      "tokens per forward pass; the state carries over, so the result does not depend on it")(
      "mode", po::value<std::string>()->default_value("prefill"),
      "prefill (windows through the forward pass) or decode (token by token through the decode step, as "
      "generation runs)")(
      "format", po::value<std::string>()->default_value("text"), "output format: text or json")(
      "quiet", "no progress on stderr");
  add_model_options(options, false);
  add_plugin_options(options);
  po::variables_map values;
  int exit_code = 0;
  if (!parse_command_line(argc, argv,
                          "mambakit eval [--model DIR] --text-file FILE [--window N] [--mode prefill|decode] [--format text|json] [--dtype "
                          "f32|f16|bf16|int8] [--threads N]",
                          options, values, exit_code)) {
    return exit_code;
  }
  const std::string format = values["format"].as<std::string>();
  if (format != "text" && format != "json") throw Error(fmt::format("--format must be text or json, got '{}'", format));
  const std::string mode_name = values["mode"].as<std::string>();
  if (mode_name != "prefill" && mode_name != "decode") {
    throw Error(fmt::format("--mode must be prefill or decode, got '{}'", mode_name));
  }
  const ScoreMode mode = mode_name == "decode" ? ScoreMode::kDecode : ScoreMode::kPrefill;
  const std::int64_t window = values["window"].as<std::int64_t>();
  if (window < 1) throw Error(fmt::format("--window must be >= 1, got {}", window));
  const std::filesystem::path text_file = values["text-file"].as<std::string>();
  const std::string text = read_text_file(text_file);
  const std::filesystem::path model_dir = resolve_model_dir(values);
  const auto tokenizer = load_model_tokenizer(model_dir);
  if (!tokenizer) throw Error(fmt::format("{} has no tokenizer (tokenizer.json or byte_tokenizer)", model_dir.string()));
  const std::vector<std::int32_t> ids = tokenizer->encode(text);
  if (ids.size() < 2) {
    throw Error(fmt::format("{}: {} bytes make {} token(s); scoring needs at least 2", text_file.string(), text.size(),
                            ids.size()));
  }
  const auto host = load_plugins(values);
  Model model = load_model(values, model_dir, *host);
  // Bits per byte count the bytes of the predicted tokens: the text less its first token.
  const auto predicted_bytes =
      static_cast<std::int64_t>(text.size()) - static_cast<std::int64_t>(tokenizer->token_text(ids[0]).size());
  if (predicted_bytes < 1) throw Error(fmt::format("{}: nothing to predict after the first token", text_file.string()));
  ProgressLine progress("eval", "tokens");
  const auto started = std::chrono::steady_clock::now();
  const SequenceScore score = score_sequence(model, ids, window, values.count("quiet") != 0 ? ScoreProgress{} : std::ref(progress), mode);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const double nll = score.nll_sum / static_cast<double>(score.predicted_tokens);
  const double bits_per_byte = score.nll_sum / std::log(2.0) / static_cast<double>(predicted_bytes);
  if (format == "json") {
    const nlohmann::json out{{"text_file", text_file.string()},
                             {"bytes", text.size()},
                             {"tokens", ids.size()},
                             {"predicted_tokens", score.predicted_tokens},
                             {"predicted_bytes", predicted_bytes},
                             {"mode", mode_name},
                             {"window", mode == ScoreMode::kDecode ? 1 : window},
                             {"windows", score.windows},
                             {"weights", sdk::dtype_name(model.weights_dtype())},
                             {"nll_per_token", nll},
                             {"perplexity", std::exp(nll)},
                             {"bits_per_byte", bits_per_byte},
                             {"seconds", seconds}};
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("{}: {} bytes, {} tokens ({} predicted), {}\n", text_file.string(), text.size(), ids.size(),
             score.predicted_tokens,
             mode == ScoreMode::kDecode ? std::string("token by token through the decode step")
                                        : fmt::format("windows of {} tokens with the state carried", window));
  fmt::print("nll per token  {:.6f} nats\nperplexity     {:.4f}\nbits per byte  {:.6f}\n", nll, std::exp(nll),
             bits_per_byte);
  fmt::print("{} weights, {:.1f} s ({:.0f} tokens/s)\n", sdk::dtype_name(model.weights_dtype()), seconds,
             score.predicted_tokens / seconds);
  return 0;
}

}  // namespace mambakit::cli
