// attention/blocked: the fast CPU attention kernel. Prefill runs flash-style over blocks of
// queries and keys with an online softmax (memory O(L), blocked_prefill.cpp); one new token
// per row (decode) streams the cache once (blocked_decode.cpp), and so do a few new tokens, one
// query at a time (a query block would be mostly padding); backward is flash attention 2
// (blocked_backward.cpp). Register-tiled SIMD products (blocked_tiles.hpp), threads over
// (row, head, query block) with OpenMP. f32 and f64.

#include <vector>

#include "attention_common.hpp"
#include "blocked_kernels.hpp"
#include "mambakit/sdk/plugin.hpp"

namespace mambakit::attention_blocked {

namespace {

/// Up to this many new tokens per row run as that many decodes.
constexpr std::int64_t kFewQueries = 4;

/// The forward of L <= kFewQueries new tokens as L decodes: query i of row b is the one token
/// of a row at position p_b + i (whose cache holds keys up to it), its lse gathered into place.
template <class T>
void few_queries(const sdk::Context& context, const sdk::AttentionForwardArgs& args) {
  const attention_common::Dims d = attention_common::dims_of(args);
  std::vector<std::int64_t> positions(static_cast<std::size_t>(d.B));
  std::vector<T> lse(static_cast<std::size_t>(d.B * d.H));
  for (std::int64_t i = 0; i < d.L; ++i) {
    sdk::AttentionForwardArgs one = args;
    for (std::int64_t b = 0; b < d.B; ++b) positions[static_cast<std::size_t>(b)] = attention_common::position(args, b) + i;
    one.positions = sdk::make_view(positions.data(), sdk::DType::kI64, sdk::Device{}, {d.B});
    for (sdk::TensorView* view : {&one.q, &one.out}) {
      view->data = static_cast<T*>(view->data) + i * view->strides[1];
      view->shape[1] = 1;
    }
    one.lse = args.lse.present() ? sdk::make_view(lse.data(), args.lse.dtype, sdk::Device{}, {d.B, d.H, 1})
                                 : sdk::TensorView{};
    blocked_decode<T>(context, one);
    if (args.lse.present()) {
      for (std::int64_t bh = 0; bh < d.B * d.H; ++bh) args.lse.as<T>()[bh * d.L + i] = lse[static_cast<std::size_t>(bh)];
    }
  }
}

class BlockedAttention final : public attention_common::CpuAttentionKernel {
 public:
  explicit BlockedAttention(const char* /*config_json*/) : CpuAttentionKernel(10) {}

  sdk::Status forward(const sdk::Context& context, const sdk::AttentionForwardArgs& args) noexcept override {
    return attention_common::by_dtype(args.q.dtype, [&](auto zero) {
      using T = decltype(zero);
      if (args.q.shape[1] <= kFewQueries) {
        few_queries<T>(context, args);
      } else {
        blocked_prefill<T>(args, context.n_threads);
      }
    });
  }

  sdk::Status backward(const sdk::Context& context, const sdk::AttentionBackwardArgs& args) noexcept override {
    return attention_common::by_dtype(args.forward.q.dtype,
                                      [&](auto zero) { blocked_backward<decltype(zero)>(context, args); });
  }
};

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_kernel(sdk::kAttentionKind, "blocked",
                              "causal attention, flash-style blocks with an online softmax; streaming decode "
                              "(f32, f64; CPU)",
                              &sdk::create_component<sdk::Kernel, BlockedAttention>);
}

}  // namespace
}  // namespace mambakit::attention_blocked

MAMBAKIT_PLUGIN("attention-blocked", "0.1.0", mambakit::attention_blocked::register_components)
