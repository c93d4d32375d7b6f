#pragma once
// A = -exp(A_log) for the decode step, kept from one step to the next while A_log is unchanged:
// a step would otherwise compute d_inner x d_state exponentials per layer per token (about 5% of
// a 130m decode step with int8 weights). A_log is compared bit for bit with the copy the cached
// values came from, so new weights (loading, training) are always seen.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "s6_views.hpp"

namespace mambakit::mixer_s6 {

class NegativeExpCache {
 public:
  /// Sizes the cache for `count` values; call before threads share it.
  void reserve(std::int64_t count) {
    if (static_cast<std::int64_t>(source_.size()) == count) return;
    source_.assign(static_cast<std::size_t>(count), std::nanf(""));
    a_.assign(static_cast<std::size_t>(count), std::nanf(""));  // -exp(NaN): what a NaN source gives
  }

  /// A for A_log[begin, end) (recomputed when those bits differ from the last call's). Threads
  /// may call it at once for disjoint ranges.
  const float* range(const float* a_log, std::int64_t begin, std::int64_t end) {
    const std::size_t bytes = static_cast<std::size_t>(end - begin) * sizeof(float);
    if (std::memcmp(a_log + begin, source_.data() + begin, bytes) != 0) {
      std::memcpy(source_.data() + begin, a_log + begin, bytes);
      negative_exp(a_log + begin, a_.data() + begin, end - begin);
    }
    return a_.data();
  }

 private:
  std::vector<float> source_, a_;
};

}  // namespace mambakit::mixer_s6
