// The gated MLP's forward over whole sequences (the decode step is in gated_mlp_step.cpp):
//
//   h = fc1(x)            (M, 2F)   M = B * L rows
//   u = a * silu(g)       (M, F)    a | g = h
//   y = fc2(u)            (M, D)
//
// f32 (f32, f16 or bf16 weights widened per call, int8 ones read as stored) or entirely f64.
// With MixerForwardArgs::saved, h goes into the saved view (GatedMlpSaved).
//
// Dimensions: B batch, L length, D d_model, F hidden.

#include "gated_mlp_mixer.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/util/gated_silu.hpp"
#include "mambakit/sdk/util/linear.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::mixer_gated_mlp {

namespace {

template <class T>
sdk::Status forward_typed(const GatedMlpDims& d, const GatedMlpParamIndex& index, const sdk::Context& context,
                          const sdk::MixerForwardArgs& args) {
  const std::int64_t B = args.x.shape[0], L = args.x.shape[1], M = B * L;
  const std::int64_t D = d.d_model, F = d.hidden;
  sdk::util::set_gemm_threads(context.n_threads);
  const sdk::util::TypedParams<T> param(context, args.params, index.count, "mixer/gated_mlp");

  const bool save = args.saved != nullptr;
  sdk::WorkspaceArray<T> h_scratch(context, save ? 0 : M * 2 * F), u(context, M * F);
  T* h = save ? args.saved[kSavedFc1].as<T>() : h_scratch.data();

  sdk::util::linear_forward(context.n_threads, args.x.as<const T>(), D, param.linear(index.fc1_weight),
                            param[index.fc1_bias], h, 2 * F, M, D, 2 * F);
  sdk::util::gated_silu_forward(h, 2 * F, u.data(), F, M, F, context.n_threads);
  sdk::util::linear_forward(context.n_threads, u.data(), F, param.linear(index.fc2_weight), param[index.fc2_bias],
                            args.y.as<T>(), D, M, F, D);
  return sdk::Status::success();
}

}  // namespace

sdk::Status gated_mlp_forward(const GatedMlpDims& dims, const GatedMlpParamIndex& index, const sdk::Context& context,
                              const sdk::MixerForwardArgs& args) {
  return sdk::guard([&]() -> sdk::Status {
    if (args.x.dtype == sdk::DType::kF64) return forward_typed<double>(dims, index, context, args);
    return forward_typed<float>(dims, index, context, args);
  });
}

}  // namespace mambakit::mixer_gated_mlp
