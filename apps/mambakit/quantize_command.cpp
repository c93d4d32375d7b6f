// mambakit quantize: a model folder whose linear weights are int8 with f32 scales per group of
// inputs (Model::quantize; the scheme in sdk/quantized.hpp), the rest f32, and the tokenizer.

#include <fmt/format.h>

#include <boost/program_options/value_semantic.hpp>
#include <filesystem>

#include "cli_common.hpp"
#include "command.hpp"
#include "mambakit/error.hpp"
#include "mambakit/sdk/quantized.hpp"

namespace mambakit::cli {

namespace po = boost::program_options;

namespace {

/// Models with more parameter bytes than this report their progress.
constexpr std::size_t kProgressBytes = 64u << 20;

}  // namespace

int quantize_main(int argc, char** argv) {
  po::options_description options;
  options.add_options()("model", po::value<std::string>()->required(), "model folder (f32, f16 or bf16 weights)")(
      "output", po::value<std::string>()->required(), "the quantized model folder")(
      "scheme", po::value<std::string>()->default_value("int8"), "quantization scheme: int8")(
      "group-size", po::value<std::int64_t>()->default_value(kDefaultInt8GroupSize),
      "inputs per scale: 32, 64 or 128")("keep-head", "leave the head's weight (the LM head; tied, the embedding) f32")(
      "threads", po::value<int>()->default_value(0), "CPU threads (0: all available)");
  add_plugin_options(options);
  po::variables_map values;
  int exit_code = 0;
  if (!parse_command_line(argc, argv,
                          "mambakit quantize --model DIR --output DIR [--scheme int8] [--group-size 32|64|128] "
                          "[--keep-head]",
                          options, values, exit_code)) {
    return exit_code;
  }
  const std::string scheme = values["scheme"].as<std::string>();
  if (scheme != "int8") throw Error(fmt::format("--scheme {} is invalid: this version quantizes to int8", scheme));
  const std::int64_t group_size = values["group-size"].as<std::int64_t>();
  if (!sdk::valid_quant_group_size(group_size)) {
    throw Error(fmt::format("--group-size {} is invalid: use 32, 64 or 128", group_size));
  }
  const std::filesystem::path model_dir = values["model"].as<std::string>(), output = values["output"].as<std::string>();
  if (std::filesystem::weakly_canonical(model_dir) == std::filesystem::weakly_canonical(output)) {
    throw Error(fmt::format("--output {} is the --model folder; write the quantized model elsewhere", output.string()));
  }
  const auto host = load_plugins(values);
  ModelOptions model_options;
  model_options.weights_dtype = sdk::DType::kF32;
  model_options.n_threads = values["threads"].as<int>();
  Model model = Model::load(model_dir, *host, model_options);
  const std::size_t f32_bytes = model.parameter_bytes();
  const bool report = f32_bytes > kProgressBytes;
  if (report) fmt::print(stderr, "{}: loaded, {:.1f} MB of f32 weights\n", model_dir.string(), f32_bytes / 1e6);
  ProgressLine progress("quantizing", "weights");
  model.quantize(group_size, values.count("keep-head") == 0,
                 report ? std::function<void(std::int64_t, std::int64_t)>(std::ref(progress)) : nullptr);
  if (report) fmt::print(stderr, "writing {}\n", output.string());
  model.save(output, sdk::DType::kQ8);
  copy_tokenizer_files(model_dir, output);
  fmt::print("{}: int8 weights, groups of {} inputs{}; {:.1f} MB in memory (f32: {:.1f} MB)\n", output.string(),
             group_size, values.count("keep-head") != 0 ? ", head kept f32" : "", model.parameter_bytes() / 1e6,
             f32_bytes / 1e6);
  return 0;
}

}  // namespace mambakit::cli
