#include "cpu_ops.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "backbone_kernels.hpp"
#include "model_impl.hpp"
#include "state_storage.hpp"
#include "training_objectives.hpp"

namespace mambakit::model {

CpuOps::~CpuOps() { begin(); }

void CpuOps::begin() {
  for (auto memory = taken_.rbegin(); memory != taken_.rend(); ++memory) impl_.workspace.deallocate(*memory);
  taken_.clear();
}

sdk::Context CpuOps::context() { return impl_.context(); }

void* CpuOps::scratch(std::size_t bytes, const char* what) {
  void* memory = impl_.workspace.allocate(std::max<std::size_t>(bytes, 1), 64);
  if (memory == nullptr) throw Error(fmt::format("out of memory for {} ({} bytes)", what, bytes));
  taken_.push_back(memory);
  return memory;
}

void CpuOps::release(void* data) {
  const auto found = std::find(taken_.rbegin(), taken_.rend(), data);
  if (found == taken_.rend()) return;
  impl_.workspace.deallocate(data);
  taken_.erase(std::next(found).base());
}

void CpuOps::to_device(void* device_memory, const void* host_memory, std::size_t bytes) {
  std::memcpy(device_memory, host_memory, bytes);
}

void CpuOps::to_host(void* host_memory, const void* device_memory, std::size_t bytes) {
  std::memcpy(host_memory, device_memory, bytes);
}

void CpuOps::copy(void* destination, const void* source, std::size_t bytes) { std::memcpy(destination, source, bytes); }

void CpuOps::copy_rows(void* destination, std::size_t destination_pitch, const void* source, std::size_t source_pitch,
                       std::size_t row_bytes, std::int64_t rows) {
  for (std::int64_t r = 0; r < rows; ++r) {
    std::memcpy(static_cast<char*>(destination) + static_cast<std::size_t>(r) * destination_pitch,
                static_cast<const char*>(source) + static_cast<std::size_t>(r) * source_pitch, row_bytes);
  }
}

void CpuOps::zero(void* memory, std::size_t bytes) { std::memset(memory, 0, bytes); }

sdk::TensorView CpuOps::parameter(int index) { return impl_.store.view(index); }

const float* CpuOps::parameter_f32(int index) { return impl_.store.data(index); }

float* CpuOps::gradient(int index) { return impl_.store.gradient(index); }

sdk::TensorView CpuOps::gradient_view(int index) { return impl_.store.gradient_view(index); }

const std::vector<std::vector<sdk::TensorView>>& CpuOps::state_on_device(InferenceState& state) {
  auto& tensors = StateAccess::host_tensors(state);
  states_.resize(tensors.size());
  for (std::size_t layer = 0; layer < tensors.size(); ++layer) {
    states_[layer].clear();
    for (auto& tensor : tensors[layer]) states_[layer].push_back(view_of(tensor));
  }
  return states_;
}

void CpuOps::embedding(const std::int32_t* ids, const sdk::TensorView& table, float* out, std::int64_t rows,
                       std::int64_t d_model) {
  embedding_lookup(ids, table, out, rows, d_model, impl_.n_threads);
}

void CpuOps::rms_norm(const float* x, const float* weight, float* out, std::int64_t rows, std::int64_t d_model,
                      double eps) {
  model::rms_norm(x, weight, out, rows, d_model, eps, impl_.n_threads);
}

void CpuOps::add(float* x, const float* y, std::int64_t count) { add_in_place(x, y, count, impl_.n_threads); }

void CpuOps::multiply(float* x, const float* y, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) x[i] *= y[i];
}

void CpuOps::layer_norm(const float* x, const float* weight, const float* bias, float* out, std::int64_t rows,
                        std::int64_t d_model, double eps) {
  model::layer_norm(x, weight, bias, out, rows, d_model, eps, impl_.n_threads);
}

void CpuOps::layer_norm_backward(const float* x, const float* weight, const float* grad_out, float* grad_x,
                                 float* grad_weight, float* grad_bias, std::int64_t rows, std::int64_t d_model,
                                 double eps) {
  model::layer_norm_backward(x, weight, grad_out, grad_x, grad_weight, grad_bias, rows, d_model, eps, impl_.n_threads);
}

void CpuOps::rms_norm_backward(const float* x, const float* weight, const float* grad_out, float* grad_x,
                               float* grad_weight, std::int64_t rows, std::int64_t d_model, double eps) {
  model::rms_norm_backward(x, weight, grad_out, grad_x, grad_weight, rows, d_model, eps, impl_.n_threads);
}

void CpuOps::embedding_backward(const std::int32_t* ids, const float* grad_out, float* grad_table, std::int64_t rows,
                                std::int64_t d_model) {
  model::embedding_backward(ids, grad_out, grad_table, rows, d_model);
}

double CpuOps::next_token_loss(const float* logits, const std::int32_t*, const std::int32_t*, const TokenBatch& tokens,
                               std::int64_t vocab, float* grad) {
  return lm_cross_entropy(logits, vocab, tokens, grad, impl_.n_threads);
}

float* CpuOps::step_output(std::int64_t, std::int64_t count) {
  step_output_.resize(static_cast<std::size_t>(count));
  return step_output_.data();
}

void CpuOps::run_step(std::int64_t, InferenceState&, const std::function<void()>& queue) {
  begin();
  queue();
}

std::vector<std::int32_t> CpuOps::argmax_rows(const float* logits, std::int64_t rows, std::int64_t stride,
                                              std::int64_t count) {
  std::vector<std::int32_t> result;
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * stride;
    result.push_back(static_cast<std::int32_t>(std::max_element(row, row + count) - row));
  }
  return result;
}

}  // namespace mambakit::model
