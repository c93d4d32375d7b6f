#include "gradient_reducer.hpp"

#include <algorithm>
#include <chrono>

namespace mambakit::training {

GradientReducer::GradientReducer(Model& model, Communicator& communicator, std::int64_t bucket_elements)
    : model_(model), communicator_(communicator), bucket_elements_(std::max<std::int64_t>(1, bucket_elements)), tree_(0) {
  const auto slices = model_.parameter_slices();
  block_ = slices.front().gradients;
  for (const auto& slice : slices) block_ = std::min(block_, slice.gradients);
  std::int64_t length = 0;
  for (const auto& slice : slices) {
    const std::int64_t begin = slice.gradients - block_;
    parameter_ranges_.push_back({begin, begin + slice.numel});
    length = std::max(length, begin + slice.numel);
  }
  tree_.reset(length);
  finished_.assign(slices.size(), false);
  if (communicator_.size() > 1) thread_ = std::thread([this] { run_thread(); });
}

GradientReducer::~GradientReducer() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void GradientReducer::add_micro_batch() {
  tree_.push(block_);
  model_.zero_gradients();
}

GradientsReady GradientReducer::ready_callback() {
  if (communicator_.size() == 1) return {};
  return [this](const std::vector<int>& indices) { parameters_ready(indices); };
}

void GradientReducer::parameters_ready(const std::vector<int>& indices) {
  for (int index : indices) {
    const Range range = parameter_ranges_[static_cast<std::size_t>(index)];
    tree_.finish(block_, range.first, range.second);
    finished_[static_cast<std::size_t>(index)] = true;
    pending_.push_back(range);
    pending_elements_ += range.second - range.first;
  }
  if (pending_elements_ >= bucket_elements_) submit_pending();
}

void GradientReducer::submit_pending() {
  if (pending_.empty()) return;
  // Neighbouring parameters make one range.
  std::sort(pending_.begin(), pending_.end());
  std::vector<Range> bucket;
  for (const Range& range : pending_) {
    if (!bucket.empty() && bucket.back().second == range.first) {
      bucket.back().second = range.second;
    } else {
      bucket.push_back(range);
    }
  }
  pending_.clear();
  pending_elements_ = 0;
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(bucket));
  }
  changed_.notify_all();
}

void GradientReducer::finish_step() {
  // Parameters that backward did not report (one process; or none used them) come last.
  for (std::size_t index = 0; index < finished_.size(); ++index) {
    if (finished_[index]) continue;
    const Range range = parameter_ranges_[index];
    tree_.finish(block_, range.first, range.second);
    if (communicator_.size() > 1) {
      pending_.push_back(range);
      pending_elements_ += range.second - range.first;
    }
  }
  submit_pending();
  const auto started = std::chrono::steady_clock::now();
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return (queue_.empty() && !busy_) || failure_ != nullptr; });
  timing_.waiting += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::fill(finished_.begin(), finished_.end(), false);
  tree_.clear();
  if (failure_ != nullptr) std::rethrow_exception(failure_);
}

GradientReducer::Timing GradientReducer::take_timing() {
  std::lock_guard lock(mutex_);
  return std::exchange(timing_, Timing{});
}

void GradientReducer::reduce_bucket(const std::vector<Range>& bucket) {
  if (bucket.size() == 1) {
    communicator_.sum(block_ + bucket.front().first, bucket.front().second - bucket.front().first);
    return;
  }
  std::int64_t total = 0;
  for (const Range& range : bucket) total += range.second - range.first;
  staging_.resize(static_cast<std::size_t>(total));
  float* cursor = staging_.data();
  for (const Range& range : bucket) cursor = std::copy(block_ + range.first, block_ + range.second, cursor);
  communicator_.sum(staging_.data(), total);
  cursor = staging_.data();
  for (const Range& range : bucket) {
    std::copy(cursor, cursor + (range.second - range.first), block_ + range.first);
    cursor += range.second - range.first;
  }
}

void GradientReducer::run_thread() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return closing_ || !queue_.empty(); });
    if (queue_.empty()) return;
    std::vector<Range> bucket = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    const auto started = std::chrono::steady_clock::now();
    std::exception_ptr failure;
    try {
      reduce_bucket(bucket);
    } catch (...) {
      failure = std::current_exception();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    lock.lock();
    busy_ = false;
    timing_.communication += seconds;
    if (failure != nullptr && failure_ == nullptr) failure_ = failure;
    changed_.notify_all();
  }
}

}  // namespace mambakit::training
