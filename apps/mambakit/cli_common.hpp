#pragma once
// Options and set-up shared by the subcommands.

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/positional_options.hpp>
#include <boost/program_options/variables_map.hpp>
#include <memory>
#include <string>
#include <vector>

#include "mambakit/model.hpp"
#include "mambakit/plugin_host.hpp"

namespace mambakit::cli {

/// Adds --plugin-dir (repeatable) to `options`.
void add_plugin_options(boost::program_options::options_description& options);

/// Loads the standard plugin locations plus the --plugin-dir folders in `values`, and prints
/// each plugin that could not be used as a warning on stderr.
std::unique_ptr<PluginHost> load_plugins(const boost::program_options::variables_map& values);

/// Adds --model (required when `model_required`), --kernel, --scan, --threads, --dtype and --device.
void add_model_options(boost::program_options::options_description& options, bool model_required);

/// The --model folder, or the bundled default model (models/default beside the installed data
/// or the source tree) when --model is absent. Throws when neither exists.
std::filesystem::path resolve_model_dir(const boost::program_options::variables_map& values);

/// The weights dtype called `name` (f32, f16, bf16, or int8: sdk::DType::kQ8); throws naming
/// `option` and the value otherwise.
sdk::DType weights_dtype(const std::string& name, const char* option);

/// The ModelOptions from --kernel, --scan, --threads, --dtype and --device.
ModelOptions model_options(const boost::program_options::variables_map& values);

/// Adds --device (cpu, cuda or cuda:INDEX; default cpu).
void add_device_option(boost::program_options::options_description& options);

/// The --device value; throws naming the value when it is not a device.
sdk::Device device_option(const boost::program_options::variables_map& values);

/// Loads the model folder `dir` with model_options(); with --verbose reports on stderr how long
/// it took, the parameters, their dtype, the device and the threads.
Model load_model(const boost::program_options::variables_map& values, const std::filesystem::path& dir,
                 const PluginHost& host);
/// As above, with `options` instead of model_options(values).
Model load_model(const boost::program_options::variables_map& values, const std::filesystem::path& dir,
                 const PluginHost& host, const ModelOptions& options);

/// Copies the tokenizer files of model folder `from` (tokenizer.json, byte_tokenizer) into
/// `to`, each atomically.
void copy_tokenizer_files(const std::filesystem::path& from, const std::filesystem::path& to);

/// Prints "LABEL: DONE/TOTAL UNIT (P%)" on stderr whenever another tenth is done (and at the
/// end), for long operations on large models.
class ProgressLine {
 public:
  ProgressLine(std::string label, std::string unit) : label_(std::move(label)), unit_(std::move(unit)) {}
  void operator()(std::int64_t done, std::int64_t total);

 private:
  std::string label_, unit_;
  std::int64_t next_tenth_ = 1;
};

/// With --verbose: reports on stderr each kernel the model's components were given, and for
/// which problem (what `auto` chose).
void report_kernels(const boost::program_options::variables_map& values, const Model& model);

/// Parses argv against `options` (with --help). Returns false when the command should exit
/// now; `exit_code` then holds its exit code (0 after --help, 2 after a usage error, which is
/// printed with the usage). `positional` names options given without their --name.
bool parse_command_line(int argc, char** argv, const char* usage,
                        const boost::program_options::options_description& options,
                        boost::program_options::variables_map& values, int& exit_code,
                        const boost::program_options::positional_options_description* positional = nullptr);

}  // namespace mambakit::cli
