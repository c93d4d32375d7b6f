// mambakit info: a model folder's dimensions, parameter count and memory.

#include <fmt/format.h>

#include <boost/program_options/value_semantic.hpp>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "command.hpp"
#include "mambakit/error.hpp"

namespace mambakit::cli {

namespace {

/// The kernels the model's components are given for a 16-token prefill and a decode step
/// of one row: what `auto` (or --kernel) chooses here.
std::vector<Model::KernelChoice> probe_kernel_choices(Model& model) {
  InferenceState state = model.make_state(1);
  try {
    model.forward(TokenBatch{1, 16, std::vector<std::int32_t>(16, 0)}, &state, true);
    model.step({0}, state);
  } catch (const Error&) {
    // A model whose components cannot run here lists the choices made before the failure.
  }
  return model.kernel_choices();
}

}  // namespace

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
  Model model = load_model(values, values["model"].as<std::string>(), *host);
  const ModelConfig& backbone = model.config();
  const InferenceState state = model.make_state(1);
  const std::size_t state_bytes = state.bytes(), state_bytes_per_token = state.bytes_per_token();
  nlohmann::json layers = nlohmann::json::array();
  for (std::int64_t layer = 0; layer < backbone.n_layer; ++layer) {
    const ComponentChoice& mixer = backbone.mixer_of_layer(layer);
    layers.push_back({{"mixer", mixer.name}, {"options", nlohmann::json::parse(mixer.options)}});
  }
  nlohmann::json kernels = nlohmann::json::array();
  for (const auto& choice : probe_kernel_choices(model)) {
    kernels.push_back({{"kind", choice.kind}, {"name", choice.name}, {"problem", choice.problem}});
  }
  const char* objectives[] = {"none (features)", "next token", "class labels"};
  const std::string objective = objectives[static_cast<int>(model.objective())];
  nlohmann::json info = {{"head", backbone.head.name},
                         {"head_options", nlohmann::json::parse(backbone.head.options)},
                         {"objective", objective},
                         {"d_model", backbone.d_model},
                         {"n_layer", backbone.n_layer},
                         {"vocab_size", backbone.vocab_size},
                         {"norm", backbone.norm == NormKind::kRms ? "rms" : "layer"},
                         {"layers", layers},
                         {"kernels", kernels},
                         {"parameters", model.parameter_count()},
                         {"parameter_bytes", model.parameter_bytes()},
                         {"weights_dtype", sdk::dtype_name(model.weights_dtype())},
                         {"state_bytes_per_row", state_bytes},
                         {"state_bytes_per_row_per_token", state_bytes_per_token}};
  if (!backbone.mlp.name.empty()) {
    info["mlp"] = {{"name", backbone.mlp.name}, {"options", nlohmann::json::parse(backbone.mlp.options)}};
  }
  if (format == "json") {
    fmt::print("{}\n", info.dump(2));
    return 0;
  }
  fmt::print("head            head/{} {} (objective: {})\n", backbone.head.name, info["head_options"].dump(), objective);
  fmt::print("d_model         {}\nn_layer         {}\nvocab_size      {}\n", backbone.d_model, backbone.n_layer,
             backbone.vocab_size);
  for (std::int64_t layer = 0; layer < backbone.n_layer; ++layer) {
    const bool same_as_previous = layer > 0 && layers[layer] == layers[layer - 1];
    if (same_as_previous) continue;
    std::int64_t last = layer;
    while (last + 1 < backbone.n_layer && layers[last + 1] == layers[layer]) ++last;
    const std::string range = last > layer ? fmt::format("{}-{}", layer, last) : fmt::format("{}", layer);
    fmt::print("layers {:<8} mixer/{} {}\n", range, layers[layer]["mixer"].get<std::string>(),
               layers[layer]["options"].dump());
  }
  if (info.contains("mlp")) {
    fmt::print("mlp (each)      mlp/{} {}\n", backbone.mlp.name, info["mlp"]["options"].dump());
  }
  fmt::print("norms           {}\n", backbone.norm == NormKind::kRms ? "RMSNorm" : "LayerNorm");
  for (const auto& kernel : kernels) {
    fmt::print("kernel          {}/{} for {}\n", kernel["kind"].get<std::string>(), kernel["name"].get<std::string>(),
               kernel["problem"].get<std::string>());
  }
  fmt::print("parameters      {} ({:.1f}M)\n", model.parameter_count(), model.parameter_count() / 1e6);
  fmt::print("weights memory  {:.1f} MiB ({})\n", model.parameter_bytes() / 1048576.0,
             sdk::dtype_name(model.weights_dtype()));
  if (state_bytes_per_token == 0) {
    fmt::print("state per row   {:.1f} KiB (constant in sequence length)\n", state_bytes / 1024.0);
  } else {
    fmt::print("state per row   {:.1f} KiB + {:.1f} KiB per token (KV cache)\n", state_bytes / 1024.0,
               state_bytes_per_token / 1024.0);
  }
  return 0;
}

}  // namespace mambakit::cli
