// Loading checkpoints: a missing, extra or misshaped tensor is an error naming it with both
// shapes; the old embedding name and a redundant tied lm_head are accepted.

#include <catch2/catch.hpp>

#include <limits>
#include <filesystem>
#include <fstream>

#include "fixtures.hpp"
#include "mambakit/error.hpp"
#include "mambakit/model.hpp"
#include "mambakit/safetensors.hpp"
#include "test_files.hpp"

using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

/// Copies tiny_tied into a scratch folder, rewriting model.safetensors through `edit`.
fs::path edited_fixture(const std::string& name,
                        const std::function<void(std::vector<mambakit::SafetensorsTensor>&)>& edit) {
  const fs::path source = mambakit::test::data_dir() / "models" / "tiny_tied";
  const fs::path target = mambakit::test::scratch_dir(name);
  fs::copy_file(source / "config.json", target / "config.json", fs::copy_options::overwrite_existing);
  const auto checkpoint = mambakit::SafetensorsFile::open(source / "model.safetensors");
  std::vector<std::vector<float>> storage;
  std::vector<mambakit::SafetensorsTensor> tensors;
  storage.reserve(checkpoint.entries().size() + 1);
  for (const auto& entry : checkpoint.entries()) {
    storage.push_back(checkpoint.read_f32(entry.name));
    tensors.push_back({entry.name, mambakit::sdk::DType::kF32, entry.shape, storage.back().data()});
  }
  edit(tensors);
  mambakit::write_safetensors(target / "model.safetensors", tensors);
  return target;
}

std::string load_error(const fs::path& dir) {
  try {
    mambakit::Model::load(dir, mambakit::test::in_tree_plugins());
  } catch (const mambakit::Error& error) {
    return error.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("a missing tensor is named with the shape the model expects") {
  const auto dir = edited_fixture("missing", [](auto& tensors) {
    std::erase_if(tensors, [](const auto& t) { return t.name == "backbone.layers.1.mixer.A_log"; });
  });
  CHECK_THAT(load_error(dir), Contains("missing tensor backbone.layers.1.mixer.A_log") && Contains("(32, 4)") &&
                                  Contains("model.safetensors"));
}

TEST_CASE("a misshaped tensor is named with both shapes") {
  static std::vector<float> wrong(32 * 3, 0.5f);
  const auto dir = edited_fixture("misshaped", [](auto& tensors) {
    for (auto& t : tensors) {
      if (t.name == "backbone.layers.0.mixer.A_log") {
        t.shape = {32, 3};
        t.data = wrong.data();
      }
    }
  });
  CHECK_THAT(load_error(dir), Contains("backbone.layers.0.mixer.A_log has shape (32, 3) but the model expects (32, 4)"));
}

TEST_CASE("an unexpected tensor is an error naming it") {
  static std::vector<float> extra(7, 1.0f);
  const auto dir = edited_fixture("extra", [](auto& tensors) {
    tensors.push_back({"backbone.layers.9.mixer.D", mambakit::sdk::DType::kF32, {7}, extra.data()});
  });
  CHECK_THAT(load_error(dir), Contains("unexpected tensor backbone.layers.9.mixer.D with shape (7)"));
}

TEST_CASE("NaN or Inf in the weights is refused naming each tensor, or loaded with allow_nonfinite") {
  // D of layer 0 (32 values) gets a NaN and an Inf, norm_f (16) an Inf.
  static std::vector<float> bad_d(32, 1.0f), bad_norm(16, 1.0f);
  bad_d[3] = std::numeric_limits<float>::quiet_NaN();
  bad_d[9] = -std::numeric_limits<float>::infinity();
  bad_norm[0] = std::numeric_limits<float>::infinity();
  const auto dir = edited_fixture("nonfinite", [](auto& tensors) {
    for (auto& t : tensors) {
      if (t.name == "backbone.layers.0.mixer.D") t.data = bad_d.data();
      if (t.name == "backbone.norm_f.weight") t.data = bad_norm.data();
    }
  });
  CHECK_THAT(load_error(dir), Contains("model.safetensors: NaN or Inf in") &&
                                  Contains("backbone.layers.0.mixer.D (2 values)") &&
                                  Contains("backbone.norm_f.weight (1 values)") && Contains("--allow-nonfinite"));
  mambakit::ModelOptions options;
  options.allow_nonfinite = true;
  const auto model = mambakit::Model::load(dir, mambakit::test::in_tree_plugins(), options);
  const auto& nonfinite = model.nonfinite_parameters();
  REQUIRE(nonfinite.size() == 2);
  CHECK(nonfinite[0].count + nonfinite[1].count == 3);
  // A clean checkpoint lists none.
  CHECK(mambakit::Model::load(mambakit::test::data_dir() / "models" / "tiny_tied", mambakit::test::in_tree_plugins(),
                              options)
            .nonfinite_parameters()
            .empty());
}

TEST_CASE("a tied checkpoint that also stores lm_head.weight loads") {
  const auto dir = edited_fixture("tied_with_head", [](auto& tensors) {
    for (const auto& t : tensors) {
      if (t.name == "backbone.embeddings.weight") {
        tensors.push_back({"lm_head.weight", t.dtype, t.shape, t.data});
        break;
      }
    }
  });
  CHECK(load_error(dir) == "no error");
}

TEST_CASE("a missing model folder or config is an error naming it") {
  CHECK_THAT(load_error("/nonexistent/model"), Contains("/nonexistent/model") && Contains("does not exist"));
  const fs::path empty = mambakit::test::scratch_dir("empty_model");
  CHECK_THAT(load_error(empty), Contains("config.json") && Contains("cannot open"));
}
