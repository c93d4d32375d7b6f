// mambakit forward: logits of a model for a batch of token ids, as a float32 .npy [B, L, V].

#include <fmt/format.h>

#include <boost/program_options/value_semantic.hpp>

#include "cli_common.hpp"
#include "command.hpp"
#include "mambakit/npy.hpp"
#include "token_input.hpp"

namespace mambakit::cli {

namespace po = boost::program_options;

int forward_main(int argc, char** argv) {
  po::options_description options;
  add_model_options(options, true);
  options.add_options()("input", po::value<std::string>()->required(), "token ids: a JSON list of equal-length lists")(
      "output", po::value<std::string>()->required(), "where to write the float32 .npy [B, L, V]");
  add_plugin_options(options);
  po::variables_map values;
  int exit_code = 0;
  if (!parse_command_line(argc, argv,
                          "mambakit forward --model DIR --input TOKENS.json --output LOGITS.npy [--kernel KIND=NAME]... "
                          "[--scan NAME] [--threads N] [--dtype ...] [--device cpu|cuda] [--verbose] [--plugin-dir DIR]...",
                          options, values, exit_code)) {
    return exit_code;
  }
  const TokenBatch tokens = read_token_file(values["input"].as<std::string>());
  const auto host = load_plugins(values);
  Model model = load_model(values, values["model"].as<std::string>(), *host);
  const FloatTensor output = model.forward(tokens);
  report_kernels(values, model);
  write_npy_f32(values["output"].as<std::string>(), output.values.data(), output.shape);
  return 0;
}

}  // namespace mambakit::cli
