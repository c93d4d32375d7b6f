#pragma once
// The fixed order in which data-parallel training adds gradients: a binary counter's tree
// over leaves pushed in turn (a perfect binary tree when their count is a power of two). The
// trainer pushes a rank's micro-batches in tree_leaf_order() of their index, and the MPI
// communicator adds the ranks' sums the same way, so that N ranks of g micro-batches each
// give the bits one process gives for N x g micro-batches (N and g powers of two).

#include <cstdint>
#include <vector>

namespace mambakit::distributed {

/// The order in which `count` leaves enter the tree: bit-reversed indices when count is a
/// power of two (then the leaves r, r + N, r + 2N, ... of each of N ranks form a subtree),
/// otherwise 0, 1, ..., count - 1.
std::vector<int> tree_leaf_order(int count);

/// Sums vectors of `length` floats, pushed one leaf at a time, in a binary counter's tree:
/// a new leaf merges with the newest partial sum while both cover as many leaves.
class TreeSum {
 public:
  explicit TreeSum(std::int64_t length) : length_(length) {}

  /// Adds a leaf that is not the last (copied or merged at once; `leaf` may change afterwards).
  void push(const float* leaf);

  /// The last leaf, in place: last[begin, end) becomes the sum of every leaf over that range.
  /// Ranges may come in any order and several calls; clear() before the next sum.
  void finish(float* last, std::int64_t begin, std::int64_t end) const;

  /// Forgets the leaves (keeping the buffers for the next sum).
  void clear();

  /// clear(), and sums of `length` floats from now on (the buffers are kept: no allocation
  /// while they are large enough).
  void reset(std::int64_t length);

  [[nodiscard]] std::int64_t length() const { return length_; }

 private:
  struct Partial {
    std::int64_t leaves = 0;
    std::vector<float> values;
  };
  std::int64_t length_;
  std::vector<Partial> stack_;
  std::vector<std::vector<float>> spare_;
};

}  // namespace mambakit::distributed
