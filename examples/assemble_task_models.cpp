// Assembles task models from configs on one backbone shape: a classifier (with a hybrid
// per-layer mixer list when an extra mixer plugin is given), a feature extractor, and trains
// the classifier for a few steps on a toy task to show the loss going down.
//
//   example_assemble_task_models

#include <cstdio>
#include <exception>

#include "mambakit/model.hpp"
#include "mambakit/optimizer.hpp"
#include "mambakit/plugin_host.hpp"

int main() {
  try {
    mambakit::PluginHost plugins;
    plugins.load_standard_locations();

    mambakit::ModelConfig classifier_config;
    classifier_config.d_model = 32;
    classifier_config.n_layer = 2;
    classifier_config.mixer = {"s6", R"({"d_state": 8})"};
    classifier_config.vocab_size = 16;
    classifier_config.head = {"classification",
                              R"({"num_labels": 2, "pooling": "mean", "labels": ["mostly-low", "mostly-high"]})"};
    mambakit::Model classifier = mambakit::Model::create(classifier_config, plugins, {{}, 0, 5, {}});
    std::printf("classifier: %lld parameters\n", static_cast<long long>(classifier.parameter_count()));

    // Toy task: is the sequence mostly made of high token ids?
    mambakit::TokenBatch batch{4, 6, {1, 2, 1, 3, 2, 1, 12, 14, 13, 15, 12, 11, 2, 3, 12, 1, 2, 1, 14, 15, 13, 2, 12, 14}};
    mambakit::TrainingTargets targets{{0, 1, 0, 1}};
    mambakit::AdamW optimizer(classifier, {});
    double first = 0, last = 0;
    for (int step = 0; step < 30; ++step) {
      classifier.zero_gradients();
      last = classifier.accumulate_gradients(batch, targets);
      if (step == 0) first = last;
      optimizer.step(3e-3);
    }
    std::printf("classifier loss: %.4f -> %.4f\n", first, last);

    mambakit::ModelConfig features_config = classifier_config;
    features_config.head = {"features", R"({"pooling": "last"})"};
    mambakit::Model extractor = mambakit::Model::create(features_config, plugins, {{}, 0, 5, {}});
    const auto embeddings = extractor.forward(batch);
    std::printf("embeddings: %lld x %lld\n", static_cast<long long>(embeddings.shape[0]),
                static_cast<long long>(embeddings.shape[1]));
    return last < first ? 0 : 1;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
}
