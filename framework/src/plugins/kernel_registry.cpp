#include "kernel_registry.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <span>

#include "mambakit/error.hpp"

namespace mambakit::plugins {

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
  // Scoring is cheap and runs per call; the message is only made when nothing can run.
  const std::pair<std::string, KernelPtr>* best = nullptr;
  std::int32_t best_score = 0;
  for (const auto& candidate : found->second) {
    const std::int32_t score = candidate.second->score(problem);
    if (score > best_score) {
      best_score = score;
      best = &candidate;
    }
  }
  if (best == nullptr) {
    std::vector<std::string> scores;
    for (const auto& [name, kernel] : found->second) scores.push_back(fmt::format("{}={}", name, kernel->score(problem)));
    const bool named = found->second.size() == 1;
    throw Error(fmt::format("no {} kernel can run a {} problem; scores: {}{}", kind, describe(problem),
                            fmt::join(scores, ", "),
                            named ? fmt::format(" (the {} kernel '{}' was named: choose another, or auto, or run where "
                                                "it runs: --device)",
                                                kind, found->second.front().first)
                                  : ""));
  }
  return {best->second.get(), best->first};
}

namespace {

bool same_problem(const sdk::KernelProblem& a, const sdk::KernelProblem& b) {
  return a.device.type == b.device.type && a.device.index == b.device.index && a.dtype == b.dtype &&
         a.n_dims == b.n_dims && a.needs_backward == b.needs_backward && a.needs_step == b.needs_step &&
         std::equal(a.dims, a.dims + std::clamp(a.n_dims, 0, sdk::kMaxKernelDims), b.dims);
}

}  // namespace

sdk::Status KernelRegistry::find(const char* kind, const sdk::KernelProblem& problem, sdk::Kernel** out) noexcept {
  try {
    const std::string kind_name = kind != nullptr ? kind : "";
    const Chosen chosen = choose(kind_name, problem);
    {
      const std::lock_guard<std::mutex> lock(records_mutex_);
      const bool known = std::any_of(seen_.begin(), seen_.end(), [&](const Seen& other) {
        return other.kernel == chosen.kernel && same_problem(other.problem, problem);
      });
      if (!known && seen_.size() < kMaxRecords) {
        seen_.push_back({chosen.kernel, problem});
        records_.push_back({kind_name, chosen.name, describe(problem)});
      }
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

}  // namespace mambakit::plugins
