#pragma once
// The host's kernel choice (sdk::KernelProvider): for every kernel kind the plugins registered,
// the kernel the user named or, for "auto", every kernel of the kind, created once; per problem
// the named one or the highest score. The host never interprets a kind or a problem's sizes.

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/kernel.hpp"

namespace mambakit::plugins {

/// A kernel chosen for a problem, as `info` and `--verbose` report it.
struct KernelChoiceRecord {
  std::string kind;
  std::string name;
  std::string problem;  ///< dtype, device, sizes and needs, e.g. "f32 cpu [1, 64, 512, 16]"
};

class KernelRegistry final : public sdk::KernelProvider {
 public:
  /// An empty registry: every find() fails.
  KernelRegistry() = default;
  /// Creates the kernels: for each kind in `selections` the named one ("auto" or absent: every
  /// kernel of the kind). Throws naming the kind and the available names when a named kind or
  /// kernel is unknown.
  KernelRegistry(const PluginHost& host, const std::map<std::string, std::string>& selections);
  KernelRegistry(const KernelRegistry&) = delete;
  KernelRegistry& operator=(const KernelRegistry&) = delete;

  struct Chosen {
    sdk::Kernel* kernel = nullptr;
    std::string name;
  };
  /// The kernel of `kind` for `problem`. Throws when none can run it, giving each score.
  Chosen choose(const std::string& kind, const sdk::KernelProblem& problem) const;

  /// sdk::KernelProvider: choose() as a Status; records the choice.
  sdk::Status find(const char* kind, const sdk::KernelProblem& problem, sdk::Kernel** out) noexcept override;

  /// The distinct choices find() made so far, in the order first made (at most kMaxRecords).
  [[nodiscard]] std::vector<KernelChoiceRecord> choices() const;

  /// One line describing a problem (see KernelChoiceRecord::problem).
  static std::string describe(const sdk::KernelProblem& problem);

 private:
  static constexpr std::size_t kMaxRecords = 64;
  std::map<std::string, std::vector<std::pair<std::string, KernelPtr>>> candidates_;  // by kind
  struct Seen {
    const sdk::Kernel* kernel;
    sdk::KernelProblem problem;
  };
  mutable std::mutex records_mutex_;
  std::vector<Seen> seen_;                 // the choices recorded, compared without formatting
  std::vector<KernelChoiceRecord> records_;
};

}  // namespace mambakit::plugins
