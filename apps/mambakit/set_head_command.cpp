// mambakit set-head: a model folder with its head replaced (Model::with_head): the backbone's
// weights and the tokenizer are kept, the new head is initialised. How a feature extractor, or a
// classifier to fine-tune, is made from a trained LM.

#include <fmt/format.h>

#include <boost/program_options/value_semantic.hpp>
#include <filesystem>

#include "cli_common.hpp"
#include "command.hpp"
#include "mambakit/error.hpp"

namespace mambakit::cli {

namespace po = boost::program_options;

int set_head_main(int argc, char** argv) {
  po::options_description options;
  options.add_options()("model", po::value<std::string>()->required(), "model folder whose backbone is kept")(
      "head", po::value<std::string>()->required(), "the new head's name (`mambakit plugins` lists them)")(
      "head-options", po::value<std::string>()->default_value("{}"), "the new head's options, a JSON object")(
      "output", po::value<std::string>()->required(), "the new model folder")(
      "seed", po::value<std::uint64_t>()->default_value(1), "seed of the new head's initialisation");
  add_plugin_options(options);
  po::variables_map values;
  int exit_code = 0;
  if (!parse_command_line(argc, argv,
                          "mambakit set-head --model DIR --head NAME [--head-options JSON] --output DIR [--seed S]",
                          options, values, exit_code)) {
    return exit_code;
  }
  const std::filesystem::path model_dir = values["model"].as<std::string>(), output = values["output"].as<std::string>();
  if (std::filesystem::weakly_canonical(model_dir) == std::filesystem::weakly_canonical(output)) {
    throw Error(fmt::format("--output {} is the --model folder; write the new model elsewhere", output.string()));
  }
  const auto host = load_plugins(values);
  ModelOptions model_options;
  model_options.weights_dtype = sdk::DType::kF32;
  const Model model = Model::load(model_dir, *host, model_options);
  const ComponentChoice head{values["head"].as<std::string>(), values["head-options"].as<std::string>()};
  const Model replaced = model.with_head(*host, head, values["seed"].as<std::uint64_t>());
  replaced.save(output);
  copy_tokenizer_files(model_dir, output);
  fmt::print("{}: head/{} {} on the backbone of {} ({} parameters)\n", output.string(), head.name, head.options,
             model_dir.string(), replaced.parameter_count());
  return 0;
}

}  // namespace mambakit::cli
