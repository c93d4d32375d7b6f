#pragma once
// head/lm's forward and backward on CUDA tensors (built only with MAMBAKIT_LM_WITH_CUDA; free of
// CUDA headers so that lm_head.cpp compiles either way). Contract as for mixer/s6 on CUDA
// (plugins/mixer/s6/s6_cuda.hpp): device views, stream-ordered device workspace, work enqueued
// on Context::stream without synchronising. Up to `few_rows` rows (decode) go through the
// few-rows kernel with no cuBLAS, so the host may capture them into a CUDA graph; more rows
// (prefill) through a cuBLAS f32 GEMM, the weight widened first when it is 16-bit. Backward:
// two cuBLAS f32 GEMMs that accumulate, f32 weight only (as on the CPU).
//
// Dimensions: B batch, L length, D d_model, V vocab.

#include <cstdint>

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/head.hpp"
#include "mambakit/sdk/status.hpp"

namespace mambakit::head_lm {

/// logits (B, L, V) f32 = hidden (B, L, D) f32 W^T, W = args.params[0] (V, D) f32, f16 or bf16.
sdk::Status lm_forward_cuda(const sdk::Context& context, const sdk::HeadForwardArgs& args, std::int64_t d_model,
                            std::int64_t vocab, std::int64_t few_rows) noexcept;

/// grad_hidden (B, L, D) += grad_logits (B, L, V) W and grad_W (V, D) += grad_logits^T hidden,
/// each skipped when its view is absent; W = args.params[0] (V, D) and everything else f32
/// (LmHead::backward refuses a 16-bit W before calling this, as on the CPU).
sdk::Status lm_backward_cuda(const sdk::Context& context, const sdk::HeadBackwardArgs& args, std::int64_t d_model,
                             std::int64_t vocab) noexcept;

}  // namespace mambakit::head_lm
