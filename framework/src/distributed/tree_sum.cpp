#include "tree_sum.hpp"

#include <algorithm>

namespace mambakit::distributed {

std::vector<int> tree_leaf_order(int count) {
  std::vector<int> order(static_cast<std::size_t>(std::max(count, 0)));
  int bits = 0;
  while ((1 << bits) < count) ++bits;
  const bool power_of_two = count > 0 && (1 << bits) == count;
  for (int i = 0; i < count; ++i) {
    int reversed = 0;
    for (int bit = 0; bit < bits; ++bit) reversed |= ((i >> bit) & 1) << (bits - 1 - bit);
    order[static_cast<std::size_t>(i)] = power_of_two ? reversed : i;
  }
  return order;
}

void TreeSum::push(const float* leaf) {
  std::vector<float> values;
  if (!spare_.empty()) {
    values = std::move(spare_.back());
    spare_.pop_back();
  }
  values.assign(leaf, leaf + length_);
  std::int64_t leaves = 1;
  while (!stack_.empty() && stack_.back().leaves == leaves) {
    Partial& left = stack_.back();
    for (std::int64_t i = 0; i < length_; ++i) values[static_cast<std::size_t>(i)] += left.values[static_cast<std::size_t>(i)];
    leaves += left.leaves;
    spare_.push_back(std::move(left.values));
    stack_.pop_back();
  }
  stack_.push_back({leaves, std::move(values)});
}

void TreeSum::finish(float* last, std::int64_t begin, std::int64_t end) const {
  // The newest partial first: the same merges push() would make, then the unequal rest.
  for (auto partial = stack_.rbegin(); partial != stack_.rend(); ++partial) {
    const float* left = partial->values.data();
    for (std::int64_t i = begin; i < end; ++i) last[i] = left[i] + last[i];
  }
}

void TreeSum::clear() {
  for (auto& partial : stack_) spare_.push_back(std::move(partial.values));
  stack_.clear();
}

void TreeSum::reset(std::int64_t length) {
  clear();
  length_ = length;
}

}  // namespace mambakit::distributed

