// The gated MLP on one token per row (forward for L = 1, no state): the two projections stream
// their weights in the stored type (few_rows.hpp: f32, f16, bf16 or int8), split between
// threads by their measured speeds; the gate between them is small.
//
// Dimensions: B batch, D d_model, F hidden.

#include <algorithm>

#include "gated_mlp_mixer.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/util/few_rows.hpp"
#include "mambakit/sdk/util/gated_silu.hpp"
#include "mambakit/sdk/util/typed_params.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::mixer_gated_mlp {

sdk::Status gated_mlp_step(const GatedMlpDims& d, const GatedMlpParamIndex& index, const sdk::Context& context,
                           const sdk::MixerStepArgs& args, sdk::util::SpeedShares& fc1_shares,
                           sdk::util::SpeedShares& fc2_shares) {
  return sdk::guard([&]() -> sdk::Status {
    if (args.x.dtype != sdk::DType::kF32) {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "mixer/gated_mlp step runs in f32, not %s",
                                sdk::dtype_name(args.x.dtype));
    }
    const std::int64_t B = args.x.shape[0], D = d.d_model, F = d.hidden;
    const int threads = std::max(1, context.n_threads);
    // The weight matrices are read in their stored type, the biases as f32.
    const sdk::util::TypedParams<float> param(context, args.params, index.count, "mixer/gated_mlp step",
                                              {index.fc1_weight, index.fc2_weight});
    sdk::WorkspaceArray<float> h(context, B * 2 * F), u(context, B * F);

    sdk::util::linear_few_rows(args.x.as<const float>(), D, args.params[index.fc1_weight], param[index.fc1_bias],
                               h.data(), 2 * F, B, D, 2 * F, threads, fc1_shares);
    sdk::util::gated_silu_forward(h.data(), 2 * F, u.data(), F, B, F, threads);
    sdk::util::linear_few_rows(u.data(), F, args.params[index.fc2_weight], param[index.fc2_bias], args.y.as<float>(),
                               D, B, F, D, threads, fc2_shares);
    return sdk::Status::success();
  });
}

}  // namespace mambakit::mixer_gated_mlp
