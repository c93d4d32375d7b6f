// greedy MODEL_DIR PROMPT [N]: the N (default 16) most likely next tokens of PROMPT, as text,
// from a model folder, through the installed libmambakit and its plugins (docs/USING.md).

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "mambakit/generation.hpp"
#include "mambakit/model.hpp"
#include "mambakit/plugin_host.hpp"
#include "mambakit/tokenizer.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: greedy MODEL_DIR PROMPT [N]\n");
    return 2;
  }
  try {
    mambakit::PluginHost plugins;
    plugins.load_standard_locations();  // the plugins installed beside libmambakit, and MAMBAKIT_PLUGIN_PATH
    mambakit::Model model = mambakit::Model::load(argv[1], plugins);
    const auto tokenizer = mambakit::load_model_tokenizer(argv[1]);
    if (!tokenizer) throw std::runtime_error(std::string(argv[1]) + " has no tokenizer");

    mambakit::GenerationOptions options;
    options.max_new_tokens = argc > 3 ? std::atoi(argv[3]) : 16;
    options.sampling.temperature = 0.0;  // greedy
    const auto result = mambakit::generate(model, {tokenizer->encode(argv[2])}, options);
    std::printf("%s%s\n", argv[2], tokenizer->decode(result.new_tokens[0]).c_str());
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
}
