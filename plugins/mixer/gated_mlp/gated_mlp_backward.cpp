// The gated MLP's backward: the gradient of gated_mlp_forward (see gated_mlp_forward.cpp), in
// reverse order, from the saved fc1 output h (GatedMlpSaved):
//
//   recompute  u = a * silu(g)
//   fc2:       grad W2 += grad_y^T u,  grad b2 += sum grad_y,  grad_u = grad_y W2
//   gate:      grad_h = [grad_u * silu(g) | grad_u * a * silu'(g)]     (sdk/util/gated_silu.hpp)
//   fc1:       grad W1 += grad_h^T x,  grad b1 += sum grad_h,  grad_x += grad_h W1
//
// Every gradient output accumulates (+=); an absent grad_params view is a frozen parameter.
// Runs in the parameters' type: f32 or f64.
//
// Dimensions: B batch, L length, M = B * L rows, D d_model, F hidden.

#include "gated_mlp_mixer.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/util/backward_views.hpp"
#include "mambakit/sdk/util/gated_silu.hpp"
#include "mambakit/sdk/util/linear.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::mixer_gated_mlp {

namespace {

template <class T>
sdk::Status backward_typed(const GatedMlpDims& d, const GatedMlpParamIndex& index, const sdk::Context& context,
                           const sdk::MixerBackwardArgs& args) {
  const std::int64_t B = args.x.shape[0], L = args.x.shape[1], M = B * L;
  const std::int64_t D = d.d_model, F = d.hidden;
  sdk::util::set_gemm_threads(context.n_threads);
  const sdk::util::TypedParams<T> param(context, args.params, index.count, "mixer/gated_mlp backward");
  auto grad_param = [&](int i) { return sdk::util::grad_param_view(args, i).as<T>(); };
  const T* h = args.saved[kSavedFc1].as<const T>();  // (M, 2F)
  const T* grad_y = args.grad_y.as<const T>();       // (M, D)

  sdk::WorkspaceArray<T> u(context, M * F), grad_u(context, M * F), grad_h(context, M * 2 * F);

  sdk::util::gated_silu_forward(h, 2 * F, u.data(), F, M, F, context.n_threads);
  sdk::util::linear_backward_params(grad_y, D, u.data(), F, grad_param(index.fc2_weight), grad_param(index.fc2_bias),
                                    M, F, D);
  sdk::util::linear_backward_input(grad_y, D, param[index.fc2_weight], grad_u.data(), F, M, F, D,
                                   /*accumulate=*/false);
  sdk::util::gated_silu_backward(h, 2 * F, grad_u.data(), F, grad_h.data(), 2 * F, M, F, context.n_threads);
  sdk::util::linear_backward_params(grad_h.data(), 2 * F, args.x.as<const T>(), D, grad_param(index.fc1_weight),
                                    grad_param(index.fc1_bias), M, D, 2 * F);
  if (args.grad_x.present()) {
    sdk::util::linear_backward_input(grad_h.data(), 2 * F, param[index.fc1_weight], args.grad_x.as<T>(), D, M, D,
                                     2 * F);
  }
  return sdk::Status::success();
}

}  // namespace

sdk::Status gated_mlp_backward(const GatedMlpDims& dims, const GatedMlpParamIndex& index, const sdk::Context& context,
                               const sdk::MixerBackwardArgs& args) {
  return sdk::guard([&]() -> sdk::Status {
    if (args.x.dtype == sdk::DType::kF64) return backward_typed<double>(dims, index, context, args);
    return backward_typed<float>(dims, index, context, args);
  });
}

}  // namespace mambakit::mixer_gated_mlp
