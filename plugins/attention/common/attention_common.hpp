#pragma once
// What the attention kernels (attention/naive, attention/blocked) share: the problem's sizes,
// strided access to rows of queries and cache entries, each row's position, the dtype dispatch,
// and the score shared by CPU kernels.
//
// Dimensions: B batch, L new tokens, H query heads, Hkv key/value heads, hd head_dim,
// C cache capacity (attention_kernel.hpp).

#include <cstdint>

#include "mambakit/sdk/attention_kernel.hpp"
#include "mambakit/sdk/util/dtype_dispatch.hpp"

namespace mambakit::attention_common {

/// The sizes of a problem, read from validated forward arguments.
struct Dims {
  std::int64_t B = 0, L = 0, H = 0, Hkv = 0, hd = 0, C = 0;
  /// Query heads per key/value head.
  [[nodiscard]] std::int64_t group() const { return H / Hkv; }
  /// The key/value head that query head h reads.
  [[nodiscard]] std::int64_t kv_head(std::int64_t h) const { return h / group(); }
};

inline Dims dims_of(const sdk::AttentionForwardArgs& args) {
  return {args.q.shape[0], args.q.shape[1], args.q.shape[2], args.k.shape[2], args.q.shape[3], args.k.shape[1]};
}

/// A (B, T, X, hd) view whose rows (the inner X * hd elements) are contiguous: q, out and
/// their gradients (T = L, X = H) or a cache and its gradients (T = C, X = Hkv).
template <class T>
struct Rows {
  T* data = nullptr;
  std::int64_t batch_stride = 0, row_stride = 0, head_dim = 0;

  Rows() = default;
  explicit Rows(const sdk::TensorView& view)
      : data(view.as<T>()), batch_stride(view.strides[0]), row_stride(view.strides[1]), head_dim(view.shape[3]) {}
  [[nodiscard]] bool present() const { return data != nullptr; }
  /// The hd elements of head `x` at row (b, t).
  [[nodiscard]] T* at(std::int64_t b, std::int64_t t, std::int64_t x) const {
    return data + b * batch_stride + t * row_stride + x * head_dim;
  }
  /// The distance between the entries of one head at consecutive t.
  [[nodiscard]] std::int64_t stride() const { return row_stride; }
};

/// p_b: the tokens row b held before the call (0 when the positions are absent).
inline std::int64_t position(const sdk::AttentionForwardArgs& args, std::int64_t b) {
  return args.positions.present() ? args.positions.as<const std::int64_t>()[b] : 0;
}

using sdk::util::by_dtype;  // body(T{}) with T = double for f64 problems, float otherwise

/// A CPU kernel of f32 and f64 problems, forward and backward, scoring `score` for them.
class CpuAttentionKernel : public sdk::AttentionKernel {
 public:
  explicit CpuAttentionKernel(std::int32_t score) : score_(score) {}

  std::int32_t score(const sdk::KernelProblem& problem) const noexcept override {
    const bool runs = sdk::attention_shape(problem).valid && problem.device.type == sdk::DeviceType::kCpu &&
                      (problem.dtype == sdk::DType::kF32 || problem.dtype == sdk::DType::kF64);
    return runs ? score_ : 0;
  }

 private:
  std::int32_t score_;
};

}  // namespace mambakit::attention_common
