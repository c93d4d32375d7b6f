// mambakit train: runs a training run config; Ctrl-C saves a checkpoint and stops cleanly.
// Started by an MPI launcher (`mpirun -np N mambakit train ...`), the N ranks train one model
// data-parallel; an error on any rank ends every rank with exit code 1, naming the rank.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <atomic>
#include <boost/program_options/value_semantic.hpp>
#include <csignal>

#include "cli_common.hpp"
#include "command.hpp"
#include "mambakit/communicator.hpp"
#include "mambakit/error.hpp"
#include "mambakit/input_limits.hpp"
#include "mambakit/trainer.hpp"

namespace mambakit::cli {

namespace po = boost::program_options;

namespace {

std::atomic<bool> stop_requested{false};

extern "C" void request_stop(int) { stop_requested.store(true); }

}  // namespace

namespace {

int train_ranks(int argc, char** argv, Communicator& communicator) {
  po::options_description options;
  options.add_options()("config", po::value<std::string>()->required(), "run config (JSON); see docs/TRAINING.md")(
      "set", po::value<std::vector<std::string>>()->composing(), "override a key: --set steps=200 (repeatable)")(
      "output-dir", po::value<std::string>(), "same as --set output_dir=DIR")(
      "resume", po::bool_switch(), "continue from OUTPUT_DIR/checkpoint")(
      "verbose", "also report the threads, dtype and device, and the kernels chosen")(
      "device", po::value<std::string>(),
      "where the model trains: cpu, cuda or cuda:INDEX (overrides the run config's device, which defaults to cpu)");
  add_plugin_options(options);
  po::variables_map values;
  int exit_code = 0;
  if (!parse_command_line(argc, argv,
                          "mambakit train --config RUN.json [--set KEY=VALUE]... [--output-dir DIR] [--resume] "
                          "[--device cpu|cuda] [--verbose] [--plugin-dir DIR]...",
                          options, values, exit_code)) {
    return exit_code;
  }
  std::vector<std::string> overrides;
  if (values.count("set") != 0) overrides = values["set"].as<std::vector<std::string>>();
  if (values.count("device") != 0) overrides.push_back("device=\"" + device_name(device_option(values)) + "\"");
  const std::string config_path = values["config"].as<std::string>();
  const std::string text = read_limited_file(config_path, kMaxConfigFileBytes, "run config");
  if (values.count("output-dir") != 0) overrides.push_back("output_dir=\"" + values["output-dir"].as<std::string>() + "\"");
  // Errors name the overrides too: a key misspelt in --set is not the file's.
  const std::string source =
      overrides.empty() ? config_path : fmt::format("{} with --set {}", config_path, fmt::join(overrides, ", "));
  RunConfig run = parse_run_config(apply_overrides(text, overrides, config_path), source);
  run.verbose = values.count("verbose") != 0;
  const auto host = load_plugins(values);
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);
  const bool finished = train(run, *host, values["resume"].as<bool>(), stop_requested,
                              [](const std::string& line) { fmt::print(stderr, "{}\n", line); }, communicator);
  return finished ? 0 : 130;
}

}  // namespace

int train_main(int argc, char** argv) {
  const auto communicator = connect_ranks(argc, argv);
  if (communicator->size() == 1) return train_ranks(argc, argv, *communicator);
  try {
    return train_ranks(argc, argv, *communicator);
  } catch (const std::exception& error) {
    // The other ranks may wait in a collective call for this one: end them all.
    communicator->abort(fmt::format("mambakit train: error: {}", error.what()));
  }
  return 1;  // not reached: abort() ends the process
}

}  // namespace mambakit::cli
