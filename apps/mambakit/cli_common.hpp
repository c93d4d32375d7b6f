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
