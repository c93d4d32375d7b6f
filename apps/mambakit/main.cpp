// mambakit: the command-line front end. Dispatches to one subcommand per source file.

#include <fmt/format.h>

#include <array>
#include <exception>
#include <string_view>

#include "command.hpp"
#include "mambakit/version.hpp"

namespace {

constexpr std::array kCommands = {
    mambakit::cli::Command{"plugins", "list the loaded plugins' components", &mambakit::cli::plugins_main},
    mambakit::cli::Command{"info", "a model's dimensions, parameter count and memory", &mambakit::cli::info_main},
    mambakit::cli::Command{"forward", "logits for token ids, written as .npy", &mambakit::cli::forward_main},
    mambakit::cli::Command{"generate", "generate text or tokens from a prompt", &mambakit::cli::generate_main},
    mambakit::cli::Command{"tokenize", "a model's tokenizer: text to ids, or ids to text", &mambakit::cli::tokenize_main},
    mambakit::cli::Command{"classify", "label probabilities of a text", &mambakit::cli::classify_main},
    mambakit::cli::Command{"embed", "embeddings of a text", &mambakit::cli::embed_main},
    mambakit::cli::Command{"eval", "perplexity and bits per byte of a text file", &mambakit::cli::eval_main},
    mambakit::cli::Command{"quantize", "a model folder with int8 linear weights", &mambakit::cli::quantize_main},
    mambakit::cli::Command{"train", "train a model from a run config", &mambakit::cli::train_main},
    mambakit::cli::Command{"set-head", "a model with a new head on a trained backbone", &mambakit::cli::set_head_main},
    mambakit::cli::Command{"grad", "loss gradients of every parameter, as safetensors", &mambakit::cli::grad_main},
    mambakit::cli::Command{"bench", "prefill speed of a named model shape per scan backend", &mambakit::cli::bench_main},
    mambakit::cli::Command{"check-plugin", "conformance checks of a mixer or head plugin",
                           &mambakit::cli::check_plugin_main},
};

void print_usage() {
  fmt::print("usage: mambakit <command> [options]   (mambakit <command> --help for its options)\n"
             "       mambakit --version\n\ncommands:\n");
  for (const auto& command : kCommands) fmt::print("  {:<12} {}\n", command.name, command.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage();
    return 2;
  }
  const std::string_view first = argv[1];
  if (first == "--version" || first == "-V") {
    fmt::print("mambakit {}\n", mambakit::kVersion);
    return 0;
  }
  if (first == "--help" || first == "-h" || first == "help") {
    print_usage();
    return 0;
  }
  for (const auto& command : kCommands) {
    if (first == command.name) {
      try {
        return command.run(argc - 1, argv + 1);
      } catch (const std::exception& error) {
        fmt::print(stderr, "mambakit {}: error: {}\n", command.name, error.what());
        return 1;
      }
    }
  }
  fmt::print(stderr, "mambakit: unknown command '{}'\n", first);
  print_usage();
  return 2;
}
