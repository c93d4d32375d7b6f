// Loads a model folder with its tokenizer, generates with a streaming callback, then shows the
// inference cache: its size, a save and restore, and a reset.
//
//   example_generate_with_cache MODEL_DIR "prompt text"

#include <cstdio>
#include <exception>
#include <filesystem>

#include "mambakit/generation.hpp"
#include "mambakit/model.hpp"
#include "mambakit/plugin_host.hpp"
#include "mambakit/tokenizer.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR PROMPT\n", argv[0]);
    return 2;
  }
  try {
    mambakit::PluginHost plugins;
    plugins.load_standard_locations();
    mambakit::Model model = mambakit::Model::load(argv[1], plugins);
    const auto tokenizer = mambakit::load_model_tokenizer(argv[1]);
    if (!tokenizer) throw std::runtime_error("the model folder has no tokenizer");

    // Streaming generation: print each piece of text as its token arrives.
    mambakit::GenerationOptions options;
    options.max_new_tokens = 40;
    options.sampling.temperature = 0.7;
    options.sampling.top_k = 40;
    options.sampling.seed = 3;
    options.eos_id = tokenizer->eos_id();
    mambakit::DecodeStream text(*tokenizer);
    std::printf("%s", argv[2]);
    const auto result = mambakit::generate(model, {tokenizer->encode(argv[2])}, options,
                                           [&](std::int64_t, std::int32_t token) {
                                             std::printf("%s", text.push(token).c_str());
                                             std::fflush(stdout);
                                             return true;
                                           });
    std::printf("%s\n", text.finish().c_str());
    std::printf("generated %zu tokens\n", result.new_tokens[0].size());

    // The cache: process a prompt once, save it, continue later from the file.
    const auto prompt = tokenizer->encode(argv[2]);
    mambakit::InferenceState cache = model.make_state(1);
    model.forward({1, static_cast<std::int64_t>(prompt.size()), prompt}, &cache);
    std::printf("cache: %s\n", cache.info_json().c_str());
    const auto file = std::filesystem::temp_directory_path() / "mambakit-example-cache.safetensors";
    cache.save(file);
    mambakit::InferenceState restored = model.make_state(1);
    restored.load(file);
    const bool same = model.step({prompt.back()}, cache).values == model.step({prompt.back()}, restored).values;
    std::printf("restored cache continues identically: %s\n", same ? "yes" : "no");
    cache.reset();
    std::printf("after reset: %s\n", cache.info_json().c_str());
    std::filesystem::remove(file);
    return same ? 0 : 1;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
}
