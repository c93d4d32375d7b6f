// mambakit generate: text (or token ids) from a causal LM, optionally streamed as it is made.

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>

#include <boost/program_options/value_semantic.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "command.hpp"
#include "mambakit/error.hpp"
#include "mambakit/generation.hpp"
#include "mambakit/tokenizer.hpp"
#include "token_input.hpp"

namespace mambakit::cli {

namespace po = boost::program_options;

int generate_main(int argc, char** argv) {
  po::options_description options;
  add_model_options(options, false);
  options.add_options()("prompt", po::value<std::string>(), "prompt text (needs the model's tokenizer)")(
      "input", po::value<std::string>(), "prompt token ids: a JSON list of lists (lengths may differ)")(
      "max-new-tokens", po::value<std::int64_t>()->default_value(64), "tokens to generate per row")(
      "temperature", po::value<double>()->default_value(1.0), "0 = greedy")(
      "top-k", po::value<std::int64_t>()->default_value(0), "keep the k most likely tokens (0: all)")(
      "top-p", po::value<double>()->default_value(1.0), "nucleus sampling threshold")(
      "min-p", po::value<double>()->default_value(0.0), "drop tokens below min-p x the top probability")(
      "repetition-penalty", po::value<double>()->default_value(1.0), "> 1 discourages repeats")(
      "seed", po::value<std::uint64_t>()->default_value(0), "random seed (same seed, same output)")(
      "stream", po::bool_switch(), "print text as tokens arrive")(
      "no-eos", po::bool_switch(), "do not stop at the end-of-text token")(
      "format", po::value<std::string>()->default_value("text"), "output: text or json");
  add_plugin_options(options);
  po::variables_map values;
  int exit_code = 0;
  if (!parse_command_line(argc, argv,
                          "mambakit generate [--model DIR] (--prompt TEXT | --input TOKENS.json) [--max-new-tokens N] "
                          "[--temperature T] [--top-k K] [--top-p P] [--min-p M] [--repetition-penalty R] [--seed S] "
                          "[--no-eos] [--stream] [--format text|json] [--kernel KIND=NAME]... [--scan NAME] [--threads N] "
                          "[--dtype auto|f32|f16|bf16|int8] [--device cpu|cuda] [--verbose] [--plugin-dir DIR]...",
                          options, values, exit_code)) {
    return exit_code;
  }
  const std::string format = values["format"].as<std::string>();
  if (format != "text" && format != "json") throw Error(fmt::format("--format must be text or json, got '{}'", format));
  if ((values.count("prompt") != 0) == (values.count("input") != 0)) {
    throw Error("give exactly one of --prompt TEXT and --input TOKENS.json");
  }
  const std::filesystem::path model_dir = resolve_model_dir(values);
  const auto host = load_plugins(values);
  Model model = load_model(values, model_dir, *host);
  const auto tokenizer = load_model_tokenizer(model_dir);

  std::vector<std::vector<std::int32_t>> prompts;
  if (values.count("prompt") != 0) {
    if (!tokenizer) {
      throw Error(fmt::format("{} has no tokenizer (tokenizer.json or byte_tokenizer); use --input TOKENS.json",
                              model_dir.string()));
    }
    const std::string text = values["prompt"].as<std::string>();
    if (text.empty()) throw Error("--prompt is empty");
    prompts.push_back(tokenizer->encode(text));
  } else {
    prompts = read_ragged_token_file(values["input"].as<std::string>());
  }

  GenerationOptions generation;
  generation.max_new_tokens = values["max-new-tokens"].as<std::int64_t>();
  generation.sampling.temperature = values["temperature"].as<double>();
  generation.sampling.top_k = values["top-k"].as<std::int64_t>();
  generation.sampling.top_p = values["top-p"].as<double>();
  generation.sampling.min_p = values["min-p"].as<double>();
  generation.sampling.repetition_penalty = values["repetition-penalty"].as<double>();
  generation.sampling.seed = values["seed"].as<std::uint64_t>();
  if (tokenizer && !values["no-eos"].as<bool>()) generation.eos_id = tokenizer->eos_id();

  const bool stream = values["stream"].as<bool>() && format == "text";
  if (stream && prompts.size() != 1) throw Error("--stream prints one row; give a single prompt");
  std::unique_ptr<DecodeStream> decoder;
  if (stream && tokenizer) {
    decoder = std::make_unique<DecodeStream>(*tokenizer);
    fmt::print("{}", tokenizer->decode(prompts[0]));
    std::fflush(stdout);
  }
  // Without --stream nothing shows until the end: a progress line on a terminal's stderr, at
  // most twice a second, after the first two seconds.
  const bool show_progress = !stream && isatty(STDERR_FILENO) != 0;
  const auto started = std::chrono::steady_clock::now();
  auto last_shown = started;
  std::int64_t produced = 0;
  const std::int64_t wanted = generation.max_new_tokens * static_cast<std::int64_t>(prompts.size());
  const auto result = generate(model, prompts, generation, [&](std::int64_t, std::int32_t token) {
    if (stream) {
      fmt::print("{}", decoder ? decoder->push(token) : fmt::format("{} ", token));
      std::fflush(stdout);
    }
    ++produced;
    if (show_progress) {
      const auto now = std::chrono::steady_clock::now();
      if (now - started > std::chrono::seconds(2) && now - last_shown > std::chrono::milliseconds(500)) {
        last_shown = now;
        const double seconds = std::chrono::duration<double>(now - started).count();
        fmt::print(stderr, "\rmambakit: {}/{} tokens, {:.1f} tok/s", produced, wanted, produced / seconds);
      }
    }
    return true;
  });
  if (show_progress && last_shown != started) fmt::print(stderr, "\n");
  report_kernels(values, model);
  if (stream) {
    fmt::print("{}\n", decoder ? decoder->finish() : "");
    return 0;
  }
  if (format == "json") {
    nlohmann::json out = {{"new_tokens", result.new_tokens}, {"stopped_at_eos", result.stopped_at_eos}};
    if (tokenizer) {
      auto texts = nlohmann::json::array();
      for (const auto& row : result.new_tokens) texts.push_back(tokenizer->decode(row));
      out["new_text"] = texts;
    }
    // Generated bytes need not be valid UTF-8 (a sampled token can end inside a character):
    // each invalid byte is written as U+FFFD, and "new_tokens" keeps the exact ids.
    fmt::print("{}\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return 0;
  }
  for (std::size_t row = 0; row < prompts.size(); ++row) {
    if (tokenizer) {
      fmt::print("{}{}\n", tokenizer->decode(prompts[row]), tokenizer->decode(result.new_tokens[row]));
    } else {
      fmt::print("{}\n", nlohmann::json(result.new_tokens[row]).dump());
    }
  }
  return 0;
}

}  // namespace mambakit::cli
