#include "cli_common.hpp"

#include <chrono>

#include "mambakit/sdk/scan_backend.hpp"

#include <fmt/format.h>
#include <fmt/std.h>

#include <boost/program_options/parsers.hpp>
#include <boost/program_options/value_semantic.hpp>
#include <boost/dll/runtime_symbol_info.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "mambakit/atomic_file.hpp"
#include "mambakit/error.hpp"

namespace mambakit::cli {

namespace po = boost::program_options;

void add_plugin_options(po::options_description& options) {
  options.add_options()("plugin-dir", po::value<std::vector<std::string>>()->composing(),
                        "also load the plugins in this folder (repeatable; MAMBAKIT_PLUGIN_PATH also works)");
}

std::unique_ptr<PluginHost> load_plugins(const po::variables_map& values) {
  std::vector<std::filesystem::path> extra_dirs;
  if (values.count("plugin-dir") != 0) {
    for (const auto& dir : values["plugin-dir"].as<std::vector<std::string>>()) extra_dirs.emplace_back(dir);
  }
  for (const auto& dir : extra_dirs) {
    std::error_code error;
    if (!std::filesystem::is_directory(dir, error)) {
      throw Error(fmt::format("--plugin-dir {}: no such folder", dir.string()));
    }
  }
  auto host = std::make_unique<PluginHost>();
  host->load_standard_locations(extra_dirs);
  for (const auto& failure : host->failures()) {
    fmt::print(stderr, "mambakit: warning: skipped plugin {}: {}\n", failure.file.string(), failure.reason);
  }
  return host;
}

void add_model_options(po::options_description& options, bool model_required) {
  auto* model = po::value<std::string>();
  if (model_required) model->required();
  options.add_options()("model", model, "model folder: config.json + model.safetensors")(
      "kernel", po::value<std::vector<std::string>>()->composing(),
      "KIND=NAME: the kernel of a kind (kinds and names: `mambakit plugins`), or KIND=auto; repeatable")(
      "scan", po::value<std::string>(), "NAME: short for --kernel selective_scan=NAME")(
      "threads", po::value<int>()->default_value(0), "CPU threads (0: all available)")(
      "verbose", "report on stderr: the model's load time, threads and weights, and the kernels chosen")(
      "dtype", po::value<std::string>()->default_value("auto"),
      "weights in memory: f32, f16, bf16, int8 (the linear weights int8, docs/USING.md), or auto (as stored in the "
      "checkpoint)")(
      "allow-nonfinite", "load weights that hold NaN or Inf (with a warning) instead of refusing them");
  add_device_option(options);
}

void add_device_option(po::options_description& options) {
  options.add_options()("device", po::value<std::string>()->default_value("cpu"),
                        "where the model runs: cpu, cuda or cuda:INDEX");
}

sdk::Device device_option(const po::variables_map& values) {
  const std::string text = values["device"].as<std::string>();
  try {
    return parse_device(text);
  } catch (const Error&) {
    throw Error(fmt::format("--device '{}' is invalid: use cpu, cuda or cuda:INDEX", text));
  }
}

namespace {

/// Where the bundled model may be: <prefix>/share/mambakit/models/default for an installed
/// executable, then the source tree's models/default for a build-tree one.
std::vector<std::filesystem::path> default_model_candidates() {
  const std::filesystem::path executable = boost::dll::program_location();
  return {executable.parent_path().parent_path() / MAMBAKIT_INSTALL_DATADIR / "mambakit" / "models" / "default",
          std::filesystem::path(MAMBAKIT_SOURCE_MODELS_DIR) / "default"};
}

}  // namespace

std::filesystem::path resolve_model_dir(const po::variables_map& values) {
  if (values.count("model") != 0) return values["model"].as<std::string>();
  for (const auto& candidate : default_model_candidates()) {
    if (std::filesystem::exists(candidate / "config.json")) return candidate;
  }
  throw Error("no --model given and no bundled default model was found (looked in models/default beside the "
              "executable's share/mambakit and in the source tree)");
}

sdk::DType weights_dtype(const std::string& name, const char* option) {
  if (name == "f32") return sdk::DType::kF32;
  if (name == "f16") return sdk::DType::kF16;
  if (name == "bf16") return sdk::DType::kBF16;
  if (name == "int8") return sdk::DType::kQ8;
  throw Error(fmt::format("{} {} is invalid: use f32, f16, bf16 or int8{}", option, name,
                          std::string_view(option) == "--dtype" ? " (or auto)" : ""));
}

ModelOptions model_options(const po::variables_map& values) {
  ModelOptions options;
  if (values.count("kernel") != 0) {
    for (const auto& item : values["kernel"].as<std::vector<std::string>>()) {
      const auto equals = item.find('=');
      if (equals == std::string::npos || equals == 0 || equals + 1 == item.size()) {
        throw Error(fmt::format("--kernel {} is invalid: use KIND=NAME, e.g. selective_scan=fused", item));
      }
      options.kernels[item.substr(0, equals)] = item.substr(equals + 1);
    }
  }
  if (values.count("scan") != 0) options.kernels[sdk::kSelectiveScanKind] = values["scan"].as<std::string>();
  options.n_threads = values["threads"].as<int>();
  if (options.n_threads < 0) throw Error(fmt::format("--threads must be >= 0, got {}", options.n_threads));
  const std::string dtype = values["dtype"].as<std::string>();
  if (dtype != "auto") options.weights_dtype = weights_dtype(dtype, "--dtype");
  options.device = device_option(values);
  options.allow_nonfinite = values.count("allow-nonfinite") != 0;
  return options;
}

Model load_model(const po::variables_map& values, const std::filesystem::path& dir, const PluginHost& host) {
  return load_model(values, dir, host, model_options(values));
}

Model load_model(const po::variables_map& values, const std::filesystem::path& dir, const PluginHost& host,
                 const ModelOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  Model model = Model::load(dir, host, options);
  for (const auto& parameter : model.nonfinite_parameters()) {
    fmt::print(stderr, "mambakit: warning: {} holds {} NaN or Inf values (--allow-nonfinite)\n", parameter.name,
               parameter.count);
  }
  if (values.count("verbose") != 0) {
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    fmt::print(stderr, "mambakit: loaded {} in {:.0f} ms: {} parameters as {}, on {}, {} threads\n", dir.string(), ms,
               model.parameter_count(), sdk::dtype_name(model.weights_dtype()), device_name(model.options().device),
               model.options().n_threads > 0 ? fmt::format("{}", model.options().n_threads) : std::string("all"));
  }
  return model;
}

void report_kernels(const po::variables_map& values, const Model& model) {
  if (values.count("verbose") == 0) return;
  for (const auto& choice : model.kernel_choices()) {
    fmt::print(stderr, "mambakit: kernel {}/{} for {}\n", choice.kind, choice.name, choice.problem);
  }
}

bool parse_command_line(int argc, char** argv, const char* usage, const po::options_description& options,
                        po::variables_map& values, int& exit_code, const po::positional_options_description* positional) {
  po::options_description all("Options");
  all.add_options()("help,h", "show this help");
  all.add(options);
  try {
    po::command_line_parser parser(argc, argv);
    parser.options(all);
    if (positional != nullptr) parser.positional(*positional);
    po::store(parser.run(), values);
    // --help is answered before the required options are checked (notify() checks them).
    if (values.count("help") != 0) {
      std::cout << "usage: " << usage << "\n\n" << all << "\n";
      exit_code = 0;
      return false;
    }
    po::notify(values);
  } catch (const po::error& error) {
    fmt::print(stderr, "mambakit {}: {}\nusage: {}\n", argv[0], error.what(), usage);
    exit_code = 2;
    return false;
  }
  return true;
}

void copy_tokenizer_files(const std::filesystem::path& from, const std::filesystem::path& to) {
  for (const char* tokenizer_file : {"tokenizer.json", "byte_tokenizer"}) {
    if (!std::filesystem::exists(from / tokenizer_file)) continue;
    write_file_atomically(to / tokenizer_file, [&](std::ostream& out) {
      std::ifstream in(from / tokenizer_file, std::ios::binary);
      out << in.rdbuf();
      if (!in.good() && !in.eof()) throw Error(fmt::format("{}: cannot read it", (from / tokenizer_file).string()));
    });
  }
}

void ProgressLine::operator()(std::int64_t done, std::int64_t total) {
  if (total <= 0) return;
  if (done * 10 < next_tenth_ * total && done < total) return;
  while (next_tenth_ * total <= done * 10) ++next_tenth_;
  fmt::print(stderr, "{}: {}/{} {} ({}%)\n", label_, done, total, unit_, done * 100 / total);
  std::fflush(stderr);
}

}  // namespace mambakit::cli
