#pragma once
// The gradient of one optimizer step in data-parallel training: each rank's micro-batch
// gradients added in the tree of distributed/tree_sum.hpp, then summed across ranks bucket by
// bucket while backward goes on (a thread of its own makes the collective calls), so that N
// ranks of g micro-batches give the bits of one process with N x g (N and g powers of two).

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "../distributed/tree_sum.hpp"
#include "mambakit/communicator.hpp"
#include "mambakit/model.hpp"

namespace mambakit::training {

class GradientReducer {
 public:
  /// Buckets hold at least `bucket_elements` gradients (the last of a step may hold fewer).
  GradientReducer(Model& model, Communicator& communicator, std::int64_t bucket_elements);
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;
  ~GradientReducer();

  /// After each micro-batch of a step but its last: the model's gradients join the tree and
  /// are zeroed for the next micro-batch.
  void add_micro_batch();

  /// For the last micro-batch's accumulate_gradients(): as backward finishes parameters, their
  /// gradients get the tree's sum and, across ranks, go out in buckets. Empty for one process.
  [[nodiscard]] GradientsReady ready_callback();

  /// After the last micro-batch: the model's gradients are the sum over every micro-batch of
  /// every rank (waits for the buckets still in flight; rethrows a failure of the thread).
  void finish_step();

  /// Seconds in collective calls, and of those the seconds finish_step() waited for them (not
  /// hidden behind backward), since the last call of this.
  struct Timing {
    double communication = 0.0, waiting = 0.0;
  };
  Timing take_timing();

 private:
  using Range = std::pair<std::int64_t, std::int64_t>;  // [begin, end) in the gradient block

  void parameters_ready(const std::vector<int>& indices);
  void submit_pending();
  void reduce_bucket(const std::vector<Range>& bucket);
  void run_thread();

  Model& model_;
  Communicator& communicator_;
  std::int64_t bucket_elements_;
  float* block_ = nullptr;
  std::vector<Range> parameter_ranges_;
  distributed::TreeSum tree_;
  std::vector<bool> finished_;
  std::vector<Range> pending_;
  std::int64_t pending_elements_ = 0;
  std::vector<float> staging_;

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::vector<Range>> queue_;
  bool busy_ = false, closing_ = false;
  std::exception_ptr failure_;
  Timing timing_;
  std::thread thread_;
};

}  // namespace mambakit::training
