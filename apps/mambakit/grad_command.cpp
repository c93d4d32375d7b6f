// mambakit grad: gradients of the mean next-token cross-entropy, under Hugging Face names.

#include <fmt/format.h>

#include <boost/program_options/value_semantic.hpp>

#include "cli_common.hpp"
#include "command.hpp"
#include "mambakit/safetensors.hpp"
#include "token_input.hpp"

namespace mambakit::cli {

namespace po = boost::program_options;

int grad_main(int argc, char** argv) {
  po::options_description options;
  add_model_options(options, true);
  options.add_options()("input", po::value<std::string>()->required(), "token ids: a JSON list of equal-length lists")(
      "output", po::value<std::string>()->required(), "where to write the gradients (.safetensors, f32)");
  add_plugin_options(options);
  po::variables_map values;
  int exit_code = 0;
  if (!parse_command_line(argc, argv, "mambakit grad --model DIR --input TOKENS.json --output GRADS.safetensors [--device cpu|cuda] "
                          "[--kernel KIND=NAME]... [--threads N] [--verbose] [--plugin-dir DIR]...",
                          options, values, exit_code)) {
    return exit_code;
  }
  const TokenBatch tokens = read_token_file(values["input"].as<std::string>());
  const auto host = load_plugins(values);
  ModelOptions model_settings = model_options(values);
  if (!model_settings.weights_dtype) model_settings.weights_dtype = sdk::DType::kF32;  // gradients need f32 weights
  Model model = load_model(values, values["model"].as<std::string>(), *host, model_settings);
  model.zero_gradients();
  const double loss = model.accumulate_gradients(tokens);
  report_kernels(values, model);
  std::vector<SafetensorsTensor> tensors;
  const auto parameters = model.parameters();
  const auto slices = model.parameter_slices();
  for (std::size_t i = 0; i < slices.size(); ++i) {
    tensors.push_back({slices[i].name, sdk::DType::kF32, parameters[i].shape, slices[i].gradients});
  }
  const float loss_value = static_cast<float>(loss);
  tensors.push_back({"loss", sdk::DType::kF32, {1}, &loss_value});
  write_safetensors(values["output"].as<std::string>(), tensors, {{"loss", fmt::format("{:.9g}", loss)}});
  fmt::print("loss {:.6f}\n", loss);
  return 0;
}

}  // namespace mambakit::cli
