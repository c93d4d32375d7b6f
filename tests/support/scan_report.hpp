#pragma once
// What the scan conformance tests print: a one-line description of a problem, and the largest
// error seen per key (backend, dtype, quantity), printed at the end of a test case.

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

#include "scan_case.hpp"

namespace mambakit::test {

/// "B=.. L=.. E=.. N=.. D=.. z=.. bias=.. h0=.. softplus=..".
inline std::string describe(std::int64_t batch, std::int64_t length, std::int64_t d_inner, std::int64_t d_state,
                            const ScanOptions& o) {
  char text[160];
  std::snprintf(text, sizeof text, "B=%lld L=%lld E=%lld N=%lld D=%d z=%d bias=%d h0=%d softplus=%d",
                static_cast<long long>(batch), static_cast<long long>(length), static_cast<long long>(d_inner),
                static_cast<long long>(d_state), o.with_D, o.with_z, o.with_delta_bias, o.with_initial_state,
                o.delta_softplus);
  return text;
}

/// Largest error seen per (backend, dtype, quantity), and problems skipped per key.
class Report {
 public:
  void note(const std::string& key, double error) {
    auto [it, inserted] = worst_.try_emplace(key, error);
    if (!inserted && !(it->second >= error)) it->second = error;
  }
  void skip(const std::string& key) { ++skipped_[key]; }
  void print(const char* title) const {
    std::printf("%s: largest error (relative_error, see scan_case.hpp)\n", title);
    for (const auto& [key, error] : worst_) std::printf("  %-40s %.3g\n", key.c_str(), error);
    for (const auto& [key, count] : skipped_) std::printf("  %-40s skipped %d problems\n", key.c_str(), count);
  }

 private:
  std::map<std::string, double> worst_;
  std::map<std::string, int> skipped_;
};

}  // namespace mambakit::test
