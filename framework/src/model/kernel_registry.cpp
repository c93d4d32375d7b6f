#include "kernel_registry.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <span>

#include "mambakit/error.hpp"

namespace mambakit::model {

KernelRegistry::KernelRegistry(const PluginHost& host, const std::map<std::string, std::string>& selections) {
  const std::vector<std::string> kinds = host.kernel_kinds();
  for (const auto& [kind, name] : selections) {
    if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) {
      throw Error(fmt::format("unknown kernel kind '{}'; the loaded plugins provide: {}", kind,
                              kinds.empty() ? std::string("(none)") : fmt::format("{}", fmt::join(kinds, ", "))));
    }
  }
  for (const auto& kind : kinds) {
    const auto selected = selections.find(kind);
    auto& list = candidates_[kind];
    if (selected != selections.end() && selected->second != "auto") {
      list.emplace_back(selected->second, host.create_kernel(kind, selected->second));
    } else {
      for (const auto& name : host.kernel_names(kind)) list.emplace_back(name, host.create_kernel(kind, name));
    }
  }
}

std::string KernelRegistry::describe(const sdk::KernelProblem& problem) {
  const std::span<const std::int64_t> dims(problem.dims, static_cast<std::size_t>(
                                                             std::clamp(problem.n_dims, 0, sdk::kMaxKernelDims)));
  return fmt::format("{} {} [{}]{}{}", sdk::dtype_name(problem.dtype), sdk::device_type_name(problem.device.type),
                     fmt::join(dims, ", "), problem.needs_backward ? " +backward" : "",
                     problem.needs_step ? " +step" : "");
}

KernelRegistry::Chosen KernelRegistry::choose(const std::string& kind, const sdk::KernelProblem& problem) const {
  const auto found = candidates_.find(kind);
  if (found == candidates_.end()) {
    std::vector<std::string> kinds;
    for (const auto& [known, list] : candidates_) kinds.push_back(known);
    throw Error(fmt::format("no {} kernel is loaded (kinds loaded: {}); check the plugin folders (mambakit plugins)",
                            kind, kinds.empty() ? std::string("none") : fmt::format("{}", fmt::join(kinds, ", "))));
  }
  Chosen best;
  std::int32_t best_score = 0;
  std::vector<std::string> scores;
  for (const auto& [name, kernel] : found->second) {
    const std::int32_t score = kernel->score(problem);
    scores.push_back(fmt::format("{}={}", name, score));
    if (score > best_score) {
      best_score = score;
      best = {kernel.get(), name};
    }
  }
  if (best.kernel == nullptr) {
    throw Error(fmt::format("no {} kernel can run a {} problem; scores: {}", kind, describe(problem),
                            fmt::join(scores, ", ")));
  }
  return best;
}

sdk::Status KernelRegistry::find(const char* kind, const sdk::KernelProblem& problem, sdk::Kernel** out) noexcept {
  try {
    const Chosen chosen = choose(kind != nullptr ? kind : "", problem);
    KernelChoiceRecord record{kind, chosen.name, describe(problem)};
    {
      const std::lock_guard<std::mutex> lock(records_mutex_);
      const bool known = std::any_of(records_.begin(), records_.end(), [&](const KernelChoiceRecord& other) {
        return other.kind == record.kind && other.name == record.name && other.problem == record.problem;
      });
      if (!known && records_.size() < kMaxRecords) records_.push_back(std::move(record));
    }
    *out = chosen.kernel;
    return sdk::Status::success();
  } catch (const std::exception& error) {
    return sdk::Status::error(sdk::StatusCode::kUnsupported, "%s", error.what());
  }
}

std::vector<KernelChoiceRecord> KernelRegistry::choices() const {
  const std::lock_guard<std::mutex> lock(records_mutex_);
  return records_;
}

}  // namespace mambakit::model
