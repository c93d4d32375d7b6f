// Determinism: forward, decode, generation and training give the same bits with 1 and 2 threads,
// and again on a second run, for every CPU kernel (each selective scan of Mamba-1, each SSD
// kernel of Mamba-2) and every weight dtype (f32, bf16, f16 and int8 for inference; training
// runs in f32). Compared with memcmp: equal to the last bit, not approximately.
//
// The shapes make every parallel loop split its work between the two threads: 3 rows of 224
// tokens (672 rows of d_model 64 pass the backbone's 2^15-element threshold, 3 x 224 x 128 x 16
// the scans' 2^16), 8 blocks of 16 channels per row for the scans, 8 heads per row for the SSD,
// sequences that span several chunks of the chunked kernels (4 to 7), projections whose outputs
// are cut into several tiles (sdk/util/linear.hpp), and gradients of the parameters summed over
// 672 rows (more than one block of Eigen's inner dimension).

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "fixtures.hpp"
#include "mambakit/generation.hpp"
#include "mambakit/model.hpp"
#include "mambakit/optimizer.hpp"
#include "mambakit/sdk/scan_backend.hpp"
#include "mambakit/sdk/ssd_kernel.hpp"

namespace sdk = mambakit::sdk;

namespace {

constexpr std::int64_t kBatch = 3, kLength = 224, kVocab = 96;
/// Tokens prefilled before the decode steps, and the steps.
constexpr std::int64_t kPrefill = 100, kDecodeSteps = 40;
constexpr std::int64_t kTrainingSteps = 3;

/// The results of one run, as named byte strings.
class Record {
 public:
  template <class T>
  void add(const std::string& name, const std::vector<T>& values) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());
    entries_.push_back({name, std::vector<unsigned char>(bytes, bytes + values.size() * sizeof(T)), sizeof(T)});
  }
  void add(const std::string& name, double value) { add(name, std::vector<double>{value}); }

  /// Checks that `other` holds the same entries, byte for byte; `what` says which runs differ.
  void check_same_bits(const Record& other, const std::string& what) const {
    REQUIRE(entries_.size() == other.entries_.size());
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const Entry& a = entries_[i];
      const Entry& b = other.entries_[i];
      INFO(what << ": " << a.name);
      REQUIRE(a.name == b.name);
      REQUIRE(a.bytes.size() == b.bytes.size());
      const bool same = std::memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size()) == 0;
      if (!same) {
        std::size_t differing = 0, first = a.bytes.size();
        for (std::size_t e = 0; e < a.bytes.size(); e += a.element_size) {
          if (std::memcmp(&a.bytes[e], &b.bytes[e], a.element_size) != 0) {
            first = std::min(first, e / a.element_size);
            ++differing;
          }
        }
        INFO(differing << " of " << a.bytes.size() / a.element_size << " elements differ, the first at " << first
                       << describe(a, b, first));
        CHECK(same);
      }
    }
  }

 private:
  struct Entry {
    std::string name;
    std::vector<unsigned char> bytes;
    std::size_t element_size;
  };

  /// The values at element `index` of two float or double entries.
  static std::string describe(const Entry& a, const Entry& b, std::size_t index) {
    const std::size_t offset = index * a.element_size;
    if (a.element_size == sizeof(float)) {
      float x = 0, y = 0;
      std::memcpy(&x, &a.bytes[offset], sizeof x);
      std::memcpy(&y, &b.bytes[offset], sizeof y);
      return fmt::format(" ({} vs {})", x, y);
    }
    if (a.element_size == sizeof(double)) {
      double x = 0, y = 0;
      std::memcpy(&x, &a.bytes[offset], sizeof x);
      std::memcpy(&y, &b.bytes[offset], sizeof y);
      return fmt::format(" ({} vs {})", x, y);
    }
    return "";
  }

  std::vector<Entry> entries_;
};

/// A model family: its config and the CPU kernels of the kind its mixer runs.
struct Family {
  std::string label;
  mambakit::ModelConfig config;
  std::string kind;
  std::vector<std::string> kernels;
};

mambakit::ModelConfig small_config(const mambakit::ComponentChoice& mixer) {
  mambakit::ModelConfig config;
  config.d_model = 64;
  config.n_layer = 2;
  config.vocab_size = kVocab;
  config.mixer = mixer;
  config.head = {"lm", "{}"};
  return config;
}

/// Mamba-1: d_inner 128 (8 blocks of 16 channels), d_state 16.
Family mamba1() {
  return {"Mamba-1", small_config({"s6", R"({"d_state": 16})"}), sdk::kSelectiveScanKind,
          mambakit::test::cpu_scan_names()};
}

/// Mamba-2: d_inner 128 in 8 heads of 16, 2 groups, d_state 16.
Family mamba2() {
  return {"Mamba-2", small_config({"mamba2", R"({"head_dim": 16, "d_state": 16, "n_groups": 2})"}), sdk::kSsdKind,
          mambakit::test::in_tree_plugins().kernel_names(sdk::kSsdKind)};
}

/// Token ids in [0, kVocab), spread by a fixed linear congruential sequence.
std::vector<std::int32_t> token_ids(std::int64_t count, std::uint32_t seed) {
  std::vector<std::int32_t> ids;
  std::uint32_t x = seed;
  for (std::int64_t i = 0; i < count; ++i) {
    x = x * 1664525u + 1013904223u;
    ids.push_back(static_cast<std::int32_t>((x >> 8) % kVocab));
  }
  return ids;
}

mambakit::TokenBatch token_batch(std::uint32_t seed) {
  return {kBatch, kLength, token_ids(kBatch * kLength, seed)};
}

/// Fails unless the OpenMP runtime gives a team of 2 threads where 2 are asked for: the runs
/// with 2 threads would otherwise compare one thread with itself.
void require_two_threads() {
  int team = 0;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    team = omp_get_num_threads();
  }
  REQUIRE(team == 2);
}

mambakit::Model make_model(const Family& family, const std::string& kernel, sdk::DType dtype, int threads) {
  mambakit::ModelOptions options;
  options.kernels = {{family.kind, kernel}};
  options.n_threads = threads;
  options.seed = 11;
  options.weights_dtype = dtype;
  options.int8_group_size = 32;  // two groups per row of the d_model-wide projections
  return mambakit::Model::create(family.config, mambakit::test::in_tree_plugins(), options);
}

/// Checks that every kernel of `kind` that `model` ran was `kernel`.
void check_kernel_used(const mambakit::Model& model, const std::string& kind, const std::string& kernel) {
  bool used = false;
  for (const auto& choice : model.kernel_choices()) {
    if (choice.kind != kind) continue;
    CHECK(choice.name == kernel);
    used = true;
  }
  CHECK(used);
}

/// Prefill of `tokens`' first kPrefill positions with a state, then kDecodeSteps decode steps:
/// every logit and the final state.
void decode(mambakit::Model& model, const mambakit::TokenBatch& tokens, const std::string& label, Record& record) {
  auto state = model.make_state(tokens.batch);
  record.add(label + " prefill logits", model.forward(mambakit::test::slice(tokens, 0, kPrefill), &state, true).values);
  for (std::int64_t t = kPrefill; t < kPrefill + kDecodeSteps; ++t) {
    record.add(fmt::format("{} step {} logits", label, t),
               model.step(mambakit::test::slice(tokens, t, t + 1).ids, state).values);
  }
  for (std::int64_t layer = 0; layer < state.n_layers(); ++layer) {
    for (std::int64_t i = 0; i < state.tensor_count(layer); ++i) {
      record.add(fmt::format("{} layer {} {} after decode", label, layer, state.tensor_name(layer, i)),
                 state.tensor(layer, i).values);
    }
  }
}

/// Forward logits; decode with 3 rows and with 1 (the decode projection's single-row path);
/// greedy and seeded-sampling generation from ragged prompts (one long enough to be prefilled
/// in parallel), and greedy from one prompt alone.
Record inference(mambakit::Model& model) {
  Record record;
  const mambakit::TokenBatch tokens = token_batch(1);
  record.add("forward logits", model.forward(tokens).values);
  decode(model, tokens, "3 rows", record);
  const std::vector<std::int32_t> first_row(tokens.ids.begin(), tokens.ids.begin() + kLength);
  decode(model, mambakit::TokenBatch{1, kLength, first_row}, "1 row", record);

  const std::vector<std::vector<std::int32_t>> prompts = {token_ids(150, 2), token_ids(3, 3), token_ids(40, 4)};
  mambakit::GenerationOptions greedy;
  greedy.max_new_tokens = 12;
  greedy.sampling.temperature = 0.0;
  mambakit::GenerationOptions sampled = greedy;
  sampled.sampling.temperature = 0.8;
  sampled.sampling.top_k = 20;
  sampled.sampling.top_p = 0.95;
  sampled.sampling.seed = 1234;
  for (const auto& [name, options] : {std::pair{"greedy", greedy}, std::pair{"sampled", sampled}}) {
    const auto result = mambakit::generate(model, prompts, options);
    for (std::size_t row = 0; row < prompts.size(); ++row) {
      record.add(fmt::format("{} generation row {}", name, row), result.new_tokens[row]);
    }
  }
  record.add("greedy generation of row 0 alone", mambakit::generate(model, {prompts[0]}, greedy).new_tokens[0]);
  return record;
}

/// kTrainingSteps AdamW steps on fresh batches (the last with activation recomputation): each
/// loss and gradient norm, then the final gradients and parameters, and a loss evaluated with
/// them.
Record training(mambakit::Model& model) {
  Record record;
  mambakit::AdamW optimizer(model, {});
  for (std::int64_t step = 0; step < kTrainingSteps; ++step) {
    model.zero_gradients();
    const bool recompute = step == kTrainingSteps - 1;
    record.add(fmt::format("step {} loss", step),
               model.accumulate_gradients(token_batch(static_cast<std::uint32_t>(10 + step)), {}, recompute));
    if (step == kTrainingSteps - 1) {
      for (const auto& parameter : model.parameters()) {
        record.add("gradient of " + parameter.name, model.gradient_values(parameter.name));
      }
    }
    record.add(fmt::format("step {} gradient norm", step), optimizer.step(1e-2));
  }
  for (const auto& parameter : model.parameters()) {
    record.add(parameter.name, model.parameter_values(parameter.name));
  }
  record.add("loss after training", model.evaluate_loss(token_batch(20)));
  return record;
}

/// The weight dtypes of inference.
const std::vector<std::pair<std::string, sdk::DType>> kInferenceDtypes = {
    {"f32", sdk::DType::kF32}, {"bf16", sdk::DType::kBF16}, {"f16", sdk::DType::kF16}, {"int8", sdk::DType::kQ8}};

void check_inference(const Family& family) {
  require_two_threads();
  REQUIRE_FALSE(family.kernels.empty());
  for (const auto& kernel : family.kernels) {
    for (const auto& [dtype_name, dtype] : kInferenceDtypes) {
      INFO(family.label << " " << family.kind << "/" << kernel << ", " << dtype_name << " weights");
      auto one = make_model(family, kernel, dtype, 1);
      auto two = make_model(family, kernel, dtype, 2);
      const Record single = inference(one);
      const Record parallel = inference(two);
      // The same model again: what a call keeps for the next (e.g. the decode step's measured
      // split of work between the threads) must not change a bit.
      const Record again = inference(two);
      single.check_same_bits(parallel, "1 thread vs 2 threads");
      parallel.check_same_bits(again, "2 threads, first vs second run");
      check_kernel_used(two, family.kind, kernel);
    }
  }
}

void check_training(const Family& family) {
  require_two_threads();
  REQUIRE_FALSE(family.kernels.empty());
  for (const auto& kernel : family.kernels) {
    INFO(family.label << " " << family.kind << "/" << kernel << ", f32 training");
    auto one = make_model(family, kernel, sdk::DType::kF32, 1);
    auto two = make_model(family, kernel, sdk::DType::kF32, 2);
    auto two_again = make_model(family, kernel, sdk::DType::kF32, 2);
    const Record single = training(one);
    const Record parallel = training(two);
    single.check_same_bits(parallel, "1 thread vs 2 threads");
    parallel.check_same_bits(training(two_again), "2 threads, first vs second run");
    check_kernel_used(two, family.kind, kernel);
  }
}

}  // namespace

TEST_CASE("Mamba-1 forward, decode and generation give the same bits on 1 and 2 threads, every scan and dtype") {
  check_inference(mamba1());
}

TEST_CASE("Mamba-2 forward, decode and generation give the same bits on 1 and 2 threads, every SSD kernel and dtype") {
  check_inference(mamba2());
}

TEST_CASE("Mamba-1 training gives the same losses and weights on 1 and 2 threads, every scan kernel") {
  check_training(mamba1());
}

TEST_CASE("Mamba-2 training gives the same losses and weights on 1 and 2 threads, every SSD kernel") {
  check_training(mamba2());
}
