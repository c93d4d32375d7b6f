// mambakit info: a model folder's dimensions, parameter count and memory.

#include <fmt/format.h>

#include <boost/program_options/value_semantic.hpp>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "command.hpp"
#include "mambakit/error.hpp"

namespace mambakit::cli {

namespace po = boost::program_options;

int info_main(int argc, char** argv) {
  po::options_description options;
  add_model_options(options, true);
  options.add_options()("format", po::value<std::string>()->default_value("text"), "output format: text or json");
  add_plugin_options(options);
  po::variables_map values;
  int exit_code = 0;
  if (!parse_command_line(argc, argv, "mambakit info --model DIR [--format text|json]", options, values, exit_code)) {
    return exit_code;
  }
  const std::string format = values["format"].as<std::string>();
  if (format != "text" && format != "json") throw Error(fmt::format("--format must be text or json, got '{}'", format));
  const auto host = load_plugins(values);
  const Model model = Model::load(values["model"].as<std::string>(), *host, model_options(values));
  const SsmConfig& ssm = ssm_of(model.config());
  const std::size_t state_bytes = model.make_state(1).bytes();
  nlohmann::json info = {{"task", task_name(model.config())},
                         {"head", head_name(model.config())},
                         {"d_model", ssm.d_model},
                         {"n_layer", ssm.n_layer},
                         {"d_inner", ssm.d_inner()},
                         {"d_state", ssm.d_state},
                         {"d_conv", ssm.d_conv},
                         {"dt_rank", ssm.resolved_dt_rank()},
                         {"vocab_size", ssm.vocab_size},
                         {"mixers", ssm.mixers},
                         {"parameters", model.parameter_count()},
                         {"parameter_bytes", model.parameter_bytes()},
                         {"weights_dtype", sdk::dtype_name(model.weights_dtype())},
                         {"state_bytes_per_row", state_bytes}};
  if (format == "json") {
    fmt::print("{}\n", info.dump(2));
    return 0;
  }
  fmt::print("task            {} (head/{})\n", info["task"].get<std::string>(), info["head"].get<std::string>());
  fmt::print("d_model         {}\nn_layer         {}\nd_inner         {}\nd_state         {}\nd_conv          {}\n",
             ssm.d_model, ssm.n_layer, ssm.d_inner(), ssm.d_state, ssm.d_conv);
  fmt::print("dt_rank         {}\nvocab_size      {}\nmixers          {}\n", ssm.resolved_dt_rank(), ssm.vocab_size,
             info["mixers"].dump());
  fmt::print("parameters      {} ({:.1f}M)\n", model.parameter_count(), model.parameter_count() / 1e6);
  fmt::print("weights memory  {:.1f} MiB ({})\n", model.parameter_bytes() / 1048576.0,
             sdk::dtype_name(model.weights_dtype()));
  fmt::print("state per row   {:.1f} KiB (constant in sequence length)\n", state_bytes / 1024.0);
  return 0;
}

}  // namespace mambakit::cli
