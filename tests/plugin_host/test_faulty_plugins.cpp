// Faulty plugins (fixture_plugins/faulty_plugin.cpp): for each way a mixer or a head can go
// wrong, the host throws a mambakit::Error that names the component and what it did, at model
// creation or at the first call that meets the fault, and the same PluginHost still makes and
// runs a good model, with the same results as before. A plugin built for another ABI is refused
// when it is loaded ("a plugin built for another ABI major is refused ..." in
// test_plugin_host.cpp).

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "mambakit/config.hpp"
#include "mambakit/conformance.hpp"
#include "mambakit/error.hpp"
#include "mambakit/model.hpp"
#include "mambakit/plugin_host.hpp"

using Catch::Matchers::Contains;
using mambakit::ComponentChoice;
using mambakit::Model;
using mambakit::PluginHost;

namespace {

/// The call that first meets a fault.
enum class Operation { kCreate, kForward, kMakeState, kStep, kTrain };

struct Fault {
  const char* name;       ///< the component's "fault" option
  Operation operation;
  const char* message;    ///< part of the error, from the component's name on
};

/// The in-tree plugins and the faulty fixture, loaded once.
const PluginHost& host() {
  static PluginHost host;
  static const bool loaded = [] {
    host.load_standard_locations();
    host.load_directory(std::filesystem::path(MAMBAKIT_FIXTURE_PLUGIN_DIR) / "faulty");
    return true;
  }();
  (void)loaded;
  return host;
}

mambakit::ModelConfig small_config(const ComponentChoice& mixer, const ComponentChoice& head) {
  mambakit::ModelConfig config;
  config.d_model = 8;
  config.n_layer = 2;
  config.vocab_size = 16;
  config.mixer = mixer;
  config.head = head;
  return config;
}

ComponentChoice with_fault(const char* name, const std::string& fault) {
  return {name, R"({"fault": ")" + fault + R"("})"};
}

mambakit::TokenBatch two_rows() { return {2, 4, {1, 2, 3, 4, 5, 6, 7, 8}}; }

Model create(const mambakit::ModelConfig& config) {
  mambakit::ModelOptions options;
  options.seed = 7;
  options.n_threads = 1;
  return Model::create(config, host(), options);
}

/// Creates a model of `config` and runs `operation` on it (a decode step after a prefill).
void run(const mambakit::ModelConfig& config, Operation operation) {
  Model model = create(config);
  switch (operation) {
    case Operation::kCreate: break;
    case Operation::kForward: model.forward(two_rows()); break;
    case Operation::kMakeState: (void)model.make_state(2); break;
    case Operation::kStep: {
      mambakit::InferenceState state = model.make_state(2);
      model.forward(two_rows(), &state);
      model.step({9, 10}, state);
      break;
    }
    case Operation::kTrain: model.accumulate_gradients(two_rows()); break;
  }
}

/// The message of the mambakit::Error that `run` throws, or "" when it throws none. Any other
/// exception escapes and fails the test.
std::string error_of(const mambakit::ModelConfig& config, Operation operation) {
  try {
    run(config, operation);
  } catch (const mambakit::Error& error) {
    return error.what();
  }
  return "";
}

/// What a good model (mixer/s6, head/lm) computes: the logits of a prefill, of a decode step
/// after it, and a training loss.
std::vector<float> good_results() {
  Model model = create(small_config({"s6", "{}"}, {"lm", "{}"}));
  mambakit::InferenceState state = model.make_state(2);
  std::vector<float> results = model.forward(two_rows(), &state).values;
  const std::vector<float> step = model.step({9, 10}, state).values;
  results.insert(results.end(), step.begin(), step.end());
  results.push_back(static_cast<float>(model.accumulate_gradients(two_rows())));
  return results;
}

/// Checks each fault of `component` in a model whose other component is `other`; after each,
/// the host still runs a good model to the same results.
void check_faults(const char* component, const ComponentChoice& other, const std::vector<Fault>& faults) {
  const bool head = std::string(component) == "test_faulty_head";
  const std::vector<float> expected = good_results();
  for (const Fault& fault : faults) {
    INFO(component << " with fault " << fault.name);
    const ComponentChoice faulty = with_fault(component, fault.name);
    const auto config = head ? small_config(other, faulty) : small_config(faulty, other);
    CHECK_THAT(error_of(config, fault.operation), Contains(component) && Contains(fault.message));
    CHECK(good_results() == expected);
  }
}

}  // namespace

TEST_CASE("the faulty fixture works without a fault") {
  REQUIRE(host().failures().empty());
  const auto config = small_config(with_fault("test_faulty", "none"), with_fault("test_faulty_head", "none"));
  for (const auto operation : {Operation::kForward, Operation::kStep, Operation::kTrain}) {
    CHECK(error_of(config, operation).empty());
  }
  CHECK_THAT(error_of(small_config(with_fault("test_faulty", "typo"), {"lm", "{}"}), Operation::kCreate),
             Contains("mixer/test_faulty") && Contains("unknown fault 'typo'"));
}

TEST_CASE("each fault of a mixer is an error naming it and leaves the host usable") {
  const char* const memory = "larger than this machine's memory";
  check_faults(
      "test_faulty", {"lm", "{}"},
      {
          {"throw_param_spec", Operation::kCreate, "layer 0 mixer/test_faulty: param_spec failed on purpose"},
          {"throw_state_spec", Operation::kMakeState, "layer 0 mixer/test_faulty: state_spec failed on purpose"},
          {"throw_saved_spec", Operation::kTrain, "layer 0 mixer/test_faulty: saved_spec failed on purpose"},
          {"throw_forward", Operation::kForward, "layer 0 mixer/test_faulty: forward failed on purpose"},
          // Backward runs from the last layer.
          {"throw_backward", Operation::kTrain, "layer 1 mixer/test_faulty backward: backward failed on purpose"},
          {"throw_step", Operation::kStep, "layer 0 mixer/test_faulty step: step failed on purpose"},
          {"throw_initialize", Operation::kCreate,
           "layer 0 mixer/test_faulty initialize: initialize failed on purpose"},
          {"error_forward", Operation::kForward, "layer 0 mixer/test_faulty: forward refuses on purpose"},
          {"negative_param_count", Operation::kCreate, "declares -1 parameters (a component may declare 0 to 65536)"},
          {"huge_param_count", Operation::kCreate, "declares 1073741824 parameters"},
          {"negative_state_count", Operation::kCreate, "declares -2 state tensors"},
          {"huge_saved_count", Operation::kCreate, "declares 1073741824 saved activations"},
          {"negative_dimension", Operation::kCreate,
           "declares parameter backbone.layers.0.mixer.weight with shape (8, -3) (every extent must be at least 1)"},
          {"over_max_rank", Operation::kCreate, "parameter backbone.layers.0.mixer.weight with rank 7, outside [0, 6]"},
          {"negative_rank", Operation::kCreate, "parameter backbone.layers.0.mixer.weight with rank -1"},
          {"overflowing_dimension", Operation::kCreate, memory},
          {"huge_dimension", Operation::kCreate, memory},
          {"unnamed_parameter", Operation::kCreate, "layer 0 mixer/test_faulty declares parameter 0 without a name"},
          {"unterminated_name", Operation::kCreate, "parameter 0 with a name that is not zero-terminated"},
          {"duplicate_names", Operation::kCreate, "declares parameter backbone.layers.0.mixer.weight twice"},
          {"f16_parameter", Operation::kCreate, "declares parameter backbone.layers.0.mixer.weight as f16"},
          {"unknown_init", Operation::kCreate, "with an unknown init kind 99"},
          {"wrong_state_batch", Operation::kMakeState,
           "declares state tensor last for 2 rows with shape (3, 8): its first extent must be the number of rows"},
          {"f64_state", Operation::kMakeState, "declares state tensor last as f64"},
          {"huge_state", Operation::kMakeState, "state tensor last with shape (2, 16777216, 16777216), larger than"},
          {"negative_saved_dimension", Operation::kTrain, "saved activation 0 for (2, 4) with shape (2, 4, -8)"},
          {"no_cpu_device", Operation::kCreate,
           "layer 0 mixer/test_faulty does not run on cpu (its plugin declares no cpu support)"},
          {"no_param_dtypes", Operation::kCreate,
           "layer 0 mixer/test_faulty cannot hold its parameters as f32 (its plugin declares no f32 support)"},
      });
}

TEST_CASE("each fault of a head is an error naming it and leaves the host usable") {
  check_faults(
      "test_faulty_head", {"test_faulty", "{}"},
      {
          {"throw_param_spec", Operation::kCreate, "head/test_faulty_head: param_spec failed on purpose"},
          {"throw_output_spec", Operation::kForward, "head/test_faulty_head: output_spec failed on purpose"},
          {"throw_forward", Operation::kForward, "head/test_faulty_head: forward failed on purpose"},
          {"throw_backward", Operation::kTrain, "head/test_faulty_head backward: backward failed on purpose"},
          {"negative_param_count", Operation::kCreate, "head/test_faulty_head declares -1 parameters"},
          {"over_max_rank", Operation::kForward, "head/test_faulty_head declares its output with rank 7"},
          {"negative_dimension", Operation::kForward, "head/test_faulty_head declares its output with shape (2, 4, -16)"},
          {"wrong_output_shape", Operation::kTrain,
           "head/test_faulty_head output of shape (2, 16) has no row of logits per position of a (2, 4) batch"},
          {"bad_dropout", Operation::kCreate, "head/test_faulty_head declares an input dropout of 1.5, outside [0, 1)"},
          {"no_cpu_device", Operation::kCreate, "head/test_faulty_head does not run on cpu"},
          {"no_param_dtypes", Operation::kCreate, "head/test_faulty_head cannot hold its parameters as f32"},
      });
}

TEST_CASE("check-plugin reports a faulty declaration as a failed check instead of crashing on it") {
  // Each of these once crashed, hung or threw std::bad_alloc inside the conformance checks.
  const std::vector<std::pair<std::string, std::string>> faults = {
      {"mixer/test_faulty", "negative_param_count"},
      {"mixer/test_faulty", "huge_param_count"},
      {"mixer/test_faulty", "negative_dimension"},
      {"mixer/test_faulty", "huge_dimension"},
      {"mixer/test_faulty", "overflowing_dimension"},
      {"mixer/test_faulty", "over_max_rank"},
      {"mixer/test_faulty", "unnamed_parameter"},
      {"mixer/test_faulty", "wrong_state_batch"},
      {"mixer/test_faulty", "negative_state_count"},
      {"mixer/test_faulty", "huge_saved_count"},
      {"mixer/test_faulty", "negative_saved_dimension"},
      {"head/test_faulty_head", "negative_param_count"},
      {"head/test_faulty_head", "over_max_rank"},
      {"head/test_faulty_head", "negative_dimension"},
  };
  for (const auto& [key, fault] : faults) {
    mambakit::ConformanceSetup setup;
    setup.options = R"({"fault": ")" + fault + R"("})";
    const auto checks = mambakit::check_component(host(), key, setup);
    INFO(key << " with fault " << fault);
    REQUIRE(checks.size() == 3);  // created, unknown option refused, declarations
    CHECK(checks.back().name == "declarations are well-formed");
    CHECK_FALSE(checks.back().passed);
    CHECK_THAT(checks.back().detail, Contains(key));
  }
}
