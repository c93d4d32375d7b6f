// Mamba-2 forward over whole sequences (the decode step is in mamba2_step.cpp).
//
//   zxbcdt = in_proj(x)                       (M, I): z | xBC | dt        M = B * L rows
//   xbc = silu(conv1d(xBC) + b)               (M, C)
//   dt = clamp(softplus(dt + dt_bias))        (M, H)
//   y = ssd(x, dt, -exp(A_log), B, C, D)      (M, E)   x | B | C = xbc
//   out = out_proj(gated_norm(y, z))          (M, D)
//
// f32 (f32, f16 or bf16 parameters, the 16-bit ones widened per call) or entirely f64. With
// MixerForwardArgs::saved, zxbcdt and y go into the saved views (Mamba2Saved); without, the
// gated norm overwrites y. Sequences longer than kBlockTokens run in_proj to norm block by block.
//
// Dimensions: B batch, L length, D d_model, E d_inner, H heads, C conv_dim, I d_in_proj.

#include <algorithm>
#include <cmath>

#include "mamba2_math.hpp"
#include "mamba2_mixer.hpp"
#include "mamba2_views.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/ssd_calls.hpp"
#include "mambakit/sdk/util/causal_conv.hpp"
#include "mambakit/sdk/util/linear.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::mixer_mamba2 {

namespace {

/// Tokens per block when a sequence is longer. in_proj, conv, dt, SSD and the gated norm run
/// over one block of one row at a time, carrying the conv and SSM states from block to block as
/// a chunked prefill does, so that what one stage writes for the next (zxbcdt, the conv output
/// and y: 26.7 KB per token at the 130m shape) is still in cache when the next reads it, and the
/// workspace stays the size of a block; out_proj then runs over the whole input at once (a
/// large GEMM). A multiple of the SSD kernels' chunk (64).
inline constexpr std::int64_t kBlockTokens = 512;

/// Batch rows [b0, b0 + batch) and tokens [t0, t0 + length) of a forward: what one pass of the
/// middle stages covers. Either every row and token (sequences up to kBlockTokens) or part of
/// one row.
struct Block {
  std::int64_t b0 = 0, batch = 0, t0 = 0, length = 0;
};

/// Rows [b0, b0 + batch) of a (B, ...) state tensor, as a (batch, ...) view; absent when `state` is.
sdk::TensorView batch_rows(const sdk::TensorView& state, std::int64_t b0, std::int64_t batch) {
  if (!state.present()) return {};
  sdk::TensorView rows = state;
  rows.shape[0] = batch;
  rows.data = static_cast<char*>(state.data) + b0 * state.strides[0] * sdk::dtype_size(state.dtype);
  return rows;
}

template <class T>
sdk::Status forward_typed(const Mamba2Dims& d, const Mamba2ParamIndex& index, const sdk::Context& context,
                          const sdk::MixerForwardArgs& args) {
  const std::int64_t B = args.x.shape[0], L = args.x.shape[1], M = B * L;
  const std::int64_t D = d.d_model, E = d.d_inner, H = d.heads, C = d.conv_dim(), I = d.d_in_proj();
  const std::int64_t conv_state = C * d.d_conv, ssm_state = H * d.head_dim * d.d_state;
  const bool blocked = L > kBlockTokens;
  sdk::util::set_gemm_threads(context.n_threads);
  const sdk::util::TypedParams<T> param(context, args.params, index.count, "mixer/mamba2");

  const bool save = args.saved != nullptr;
  const std::int64_t block_rows = blocked ? kBlockTokens : M;
  sdk::WorkspaceArray<T> zxbcdt_scratch(context, save ? 0 : block_rows * I), xbc(context, block_rows * C),
      dt(context, block_rows * H), a(context, H), y_scratch(context, save ? 0 : M * E),
      normed_scratch(context, save ? M * E : 0), carried(context, blocked ? 2 * (conv_state + ssm_state) : 0);
  T* const y = save ? args.saved[kSavedY].as<T>() : y_scratch.data();
  T* const normed = save ? normed_scratch.data() : y;  // in place unless y is saved for backward
  // State i carried between the blocks of a row, in two slots: block k writes slot k % 2 and
  // block k + 1 reads it.
  auto carried_state = [&](int i, std::int64_t slot) {
    if (i == kConvState) return contiguous(carried.data() + slot * conv_state, {1, C, d.d_conv});
    return contiguous(carried.data() + 2 * conv_state + slot * ssm_state, {1, H, d.head_dim, d.d_state});
  };
  for (std::int64_t h = 0; h < H; ++h) a[h] = -std::exp(param[index.a_log][h]);

  // in_proj, conv, dt, SSD and the gated norm of one block.
  auto run_block = [&](const Block& blk) -> sdk::Status {
    const bool first = blk.t0 == 0, last = blk.t0 + blk.length == L;
    const std::int64_t k = blk.t0 / kBlockTokens;  // the block's index within its row
    const std::int64_t row0 = blk.b0 * L + blk.t0, rows = blk.batch * blk.length;
    // zxbcdt (rows, I): the block's rows of the saved tensor, or the scratch of one block.
    T* const zxbcdt = save ? args.saved[kSavedZxbcdt].as<T>() + row0 * I : zxbcdt_scratch.data();
    sdk::util::linear_forward(context.n_threads, args.x.as<const T>() + row0 * D, D,
                              param.linear(index.in_proj_weight), param[index.in_proj_bias], zxbcdt, I, rows, D, I);
    auto state_in = [&](int i) {
      return first ? batch_rows(args.initial_state ? args.initial_state[i] : sdk::TensorView{}, blk.b0, blk.batch)
                   : carried_state(i, (k + 1) % 2);
    };
    auto state_out = [&](int i) {
      return last ? batch_rows(args.final_state ? args.final_state[i] : sdk::TensorView{}, blk.b0, blk.batch)
                  : carried_state(i, k % 2);
    };
    const sdk::TensorView conv_in = state_in(kConvState), conv_out = state_out(kConvState);
    sdk::util::causal_conv_silu(zxbcdt + d.xbc_offset(), I, param[index.conv_weight],
                                param[index.conv_bias], conv_in.present() ? conv_in.as<const T>() : nullptr,
                                conv_out.present() ? conv_out.as<T>() : nullptr, xbc.data(), blk.batch, blk.length, C,
                                d.d_conv, context.n_threads);
    dt_forward(zxbcdt + d.dt_offset(), I, param[index.dt_bias], d.dt_limit_min, d.dt_limit_max, dt.data(),
               rows, H, context.n_threads);

    const XbcViews<T> slices(xbc.data(), d, blk.batch, blk.length);
    sdk::SsdForwardArgs ssd;
    ssd.x = slices.x;
    ssd.dt = contiguous(dt.data(), {blk.batch, blk.length, H});
    ssd.A = contiguous(a.data(), {H});
    ssd.B = slices.B;
    ssd.C = slices.C;
    ssd.D = contiguous(param[index.d], {H});
    ssd.initial_state = state_in(kSsmState);
    ssd.final_state = state_out(kSsmState);
    ssd.y = rows4(y + row0 * E, blk.batch, blk.length, H, d.head_dim, E);
    MAMBAKIT_RETURN_IF_ERROR(sdk::ssd_forward(context, ssd, save));

    gated_norm_forward(y + row0 * E, zxbcdt, I, param[index.norm_weight], normed + row0 * E, rows, E,
                       d.groups, d.norm_eps, context.n_threads);
    return sdk::Status::success();
  };
  if (!blocked) {
    MAMBAKIT_RETURN_IF_ERROR(run_block({0, B, 0, L}));
  } else {
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t t0 = 0; t0 < L; t0 += kBlockTokens) {
        MAMBAKIT_RETURN_IF_ERROR(run_block({b, 1, t0, std::min(kBlockTokens, L - t0)}));
      }
    }
  }

  sdk::util::linear_forward(context.n_threads, normed, E, param.linear(index.out_proj_weight),
                            param[index.out_proj_bias], args.y.as<T>(), D, M, E, D);
  return sdk::Status::success();
}

}  // namespace

sdk::Status mamba2_forward(const Mamba2Dims& dims, const Mamba2ParamIndex& index, const sdk::Context& context,
                           const sdk::MixerForwardArgs& args) {
  return sdk::guard([&]() -> sdk::Status {
    if (args.x.dtype == sdk::DType::kF64) return forward_typed<double>(dims, index, context, args);
    return forward_typed<float>(dims, index, context, args);
  });
}

}  // namespace mambakit::mixer_mamba2
