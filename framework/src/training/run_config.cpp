// Run configs of `mambakit train`: parsing with named errors, and command-line overrides.

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "../config/json_fields.hpp"
#include "mambakit/error.hpp"
#include "mambakit/input_limits.hpp"
#include "mambakit/model.hpp"
#include "mambakit/trainer.hpp"

namespace mambakit {

RunConfig parse_run_config(const std::string& json_text, const std::string& source) {
  check_json_depth(json_text, source);
  const auto root = nlohmann::json::parse(json_text, nullptr, false);
  if (root.is_discarded()) throw Error(fmt::format("{}: not valid JSON", source));
  if (!root.is_object()) throw Error(fmt::format("{}: not a JSON object but {}", source, root.type_name()));
  config_json::Fields fields(root, source);
  RunConfig run;
  if (root.contains("model")) {
    if (!root["model"].is_object()) fields.fail("model", root["model"], "must be a model config object");
    run.model_json = root["model"].dump();
  }
  fields.ignore({"model", "head"});
  if (root.contains("head")) {
    const auto& head = root["head"];
    if (head.is_string()) {
      run.head.name = head.get<std::string>();
    } else if (head.is_object() && head.contains("name") && head["name"].is_string() &&
               (!head.contains("options") || head["options"].is_object()) && head.size() <= 2 &&
               (head.size() == 1 || head.contains("options"))) {
      run.head.name = head["name"].get<std::string>();
      if (head.contains("options")) run.head.options = head["options"].dump();
    } else {
      fields.fail("head", head, "must be a head name or {\"name\": NAME, \"options\": {...}}");
    }
    if (run.head.name.empty()) fields.fail("head", head, "must name a head");
  }
  std::string text;
  text.clear();
  fields.read("init_from", text);
  run.init_from = text;
  text.clear();
  fields.read("train_data", text);
  run.train_data = text;
  text.clear();
  fields.read("valid_data", text);
  run.valid_data = text;
  fields.read("valid_fraction", run.valid_fraction);
  fields.read("tokenizer", run.tokenizer);
  fields.read("seq_len", run.seq_len);
  fields.read("batch_size", run.batch_size);
  fields.read("grad_accum", run.grad_accum);
  fields.read("steps", run.steps);
  fields.read("lr", run.lr);
  fields.read("min_lr", run.min_lr);
  fields.read("warmup", run.warmup);
  fields.read("weight_decay", run.weight_decay);
  fields.read("clip_norm", run.clip_norm);
  fields.read("beta1", run.beta1);
  fields.read("beta2", run.beta2);
  fields.read("eval_every", run.eval_every);
  fields.read("eval_batches", run.eval_batches);
  fields.read("save_every", run.save_every);
  fields.read("log_every", run.log_every);
  text = run.output_dir.string();
  fields.read("output_dir", text);
  run.output_dir = text;
  std::int64_t seed = static_cast<std::int64_t>(run.seed);
  fields.read("seed", seed);
  run.seed = static_cast<std::uint64_t>(seed);
  fields.read("threads", run.threads);
  fields.read("recompute", run.recompute);
  fields.read("bucket_mb", run.bucket_mb);
  fields.read("save_dtype", run.save_dtype);
  fields.read_string_map("kernels", run.kernels);
  fields.read("device", run.device);
  fields.reject_unread();

  auto require = [&](bool ok, const char* key, const std::string& value, const char* rule) {
    if (!ok) throw Error(fmt::format("{}: {} = {} is invalid: {}", source, key, value, rule));
  };
  require(!run.model_json.empty() || !run.init_from.empty(), "model", "(absent)", "give \"model\" or \"init_from\"");
  require(run.model_json.empty() || run.init_from.empty(), "model", "(with init_from)",
          "give \"model\" (a new model) or \"init_from\" (a trained one, with \"head\" to replace its head), not both");
  require(run.head.name.empty() || !run.init_from.empty(), "head", run.head.name,
          "replaces the head of the init_from model; a new model names its head in \"model\"");
  require(!run.train_data.empty(), "train_data", "(absent)", "give the training data file");
  require(run.valid_fraction > 0 && run.valid_fraction < 1, "valid_fraction", std::to_string(run.valid_fraction),
          "must be in (0, 1)");
  require(run.seq_len >= 2, "seq_len", std::to_string(run.seq_len), "must be >= 2");
  require(run.batch_size >= 1, "batch_size", std::to_string(run.batch_size), "must be >= 1");
  require(run.grad_accum >= 1, "grad_accum", std::to_string(run.grad_accum), "must be >= 1");
  require(run.steps >= 1, "steps", std::to_string(run.steps), "must be >= 1");
  require(run.lr > 0 && run.min_lr >= 0 && run.min_lr <= run.lr, "lr", fmt::format("{} (min_lr {})", run.lr, run.min_lr),
          "needs lr > 0 and 0 <= min_lr <= lr");
  require(run.warmup >= 0, "warmup", std::to_string(run.warmup), "must be >= 0");
  require(run.eval_every >= 1 && run.save_every >= 1 && run.log_every >= 1, "eval_every/save_every/log_every",
          fmt::format("{}/{}/{}", run.eval_every, run.save_every, run.log_every), "must be >= 1");
  require(run.eval_batches >= 1, "eval_batches", std::to_string(run.eval_batches), "must be >= 1");
  try {
    parse_device(run.device);
  } catch (const Error&) {
    require(false, "device", run.device, "must be cpu, cuda or cuda:INDEX");
  }
  require(run.save_dtype == "f32" || run.save_dtype == "f16" || run.save_dtype == "bf16", "save_dtype", run.save_dtype,
          "must be f32, f16 or bf16");
  require(run.threads >= 0, "threads", std::to_string(run.threads), "must be >= 0");
  require(run.bucket_mb > 0 && run.bucket_mb <= 4096, "bucket_mb", std::to_string(run.bucket_mb), "must be in (0, 4096]");
  return run;
}

std::string apply_overrides(const std::string& json_text, const std::vector<std::string>& overrides,
                            const std::string& source) {
  check_json_depth(json_text, source);
  auto root = nlohmann::json::parse(json_text, nullptr, false);
  if (root.is_discarded()) throw Error(fmt::format("{}: not valid JSON", source));
  if (!root.is_object()) throw Error(fmt::format("{}: not a JSON object but {}", source, root.type_name()));
  for (const auto& item : overrides) {
    const auto equals = item.find('=');
    if (equals == std::string::npos || equals == 0) {
      throw Error(fmt::format("override '{}' is not key=value", item));
    }
    const std::string key = item.substr(0, equals), value = item.substr(equals + 1);
    auto parsed = nlohmann::json::parse(value, nullptr, false);
    root[key] = parsed.is_discarded() ? nlohmann::json(value) : parsed;
  }
  return root.dump();
}

}  // namespace mambakit
