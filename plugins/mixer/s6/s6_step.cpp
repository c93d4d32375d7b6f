// The S6 one-token decode step (the equations of s6_forward.cpp for L = 1, state in place).
//
// One parallel region per step. Each thread owns a range of channels from in_proj through the
// conv and the scan (channels are independent there), so only x_proj and out_proj, which mix
// all channels, need the whole previous result: three barriers per step. The ranges follow the
// threads' measured speeds (speed_shares.hpp), so that a thread slowed by a neighbour's load
// gets less to do, and a thread that still arrives first at a barrier prefetches the weights
// it reads next (prefetching_barrier.hpp). The four weight matrices are read in their stored
// type (few_rows.hpp), so 16-bit weights halve the bytes a step streams; every output is summed
// in one fixed order, so a row's result depends on neither the batch, the thread count nor the
// split.
//
// Dimensions: B batch, D d_model, E d_inner, N d_state, R dt_rank, K d_conv, W = R + 2N.

#include <omp.h>

#include <algorithm>
#include <array>
#include <map>
#include <utility>
#include <vector>

#include "mambakit/sdk/util/causal_conv.hpp"
#include "mambakit/sdk/util/few_rows.hpp"
#include "mambakit/sdk/util/prefetching_barrier.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/scan_calls.hpp"
#include "mambakit/sdk/workspace.hpp"
#include "s6_mixer.hpp"
#include "s6_views.hpp"

namespace mambakit::mixer_s6 {

namespace {

/// The small parameters a step reads as f32, slice by slice: an f32 parameter in place, a
/// 16-bit one widened into scratch memory by the thread that reads the slice (threads read
/// disjoint slices, so the widening is parallel and needs no synchronisation).
class F32Slices {
 public:
  F32Slices(const sdk::Context& context, const sdk::TensorView* params, std::initializer_list<int> indices)
      : params_(params), scratch_(context, widened_elements(params, indices)) {
    std::int64_t offset = 0;
    for (const int index : indices) {
      if (index < 0) continue;
      const sdk::TensorView& view = params[index];
      if (view.dtype == sdk::DType::kF32) {
        bases_[index] = view.as<const float>();
      } else {
        bases_[index] = scratch_.data() + offset;
        offset += view.numel();
      }
    }
  }

  /// Parameter `index` as f32 (only the slices widened so far hold values), or nullptr for an
  /// absent optional parameter (-1).
  [[nodiscard]] const float* base(int index) const { return index < 0 ? nullptr : bases_.at(index); }

  /// Makes elements [begin, end) of parameter `index` readable through base(); index -1 is a no-op.
  void widen(int index, std::int64_t begin, std::int64_t end) const {
    if (index < 0 || end <= begin || params_[index].dtype == sdk::DType::kF32) return;
    const sdk::TensorView& view = params_[index];
    sdk::util::widen_to_f32(view.as<const std::uint16_t>() + begin, view.dtype == sdk::DType::kBF16,
                                const_cast<float*>(bases_.at(index)) + begin, end - begin);
  }

 private:
  static std::int64_t widened_elements(const sdk::TensorView* params, std::initializer_list<int> indices) {
    std::int64_t total = 0;
    for (const int index : indices) {
      if (index >= 0 && params[index].dtype != sdk::DType::kF32) total += params[index].numel();
    }
    return total;
  }

  const sdk::TensorView* params_;
  sdk::WorkspaceArray<float> scratch_;
  std::map<int, const float*> bases_;
};

/// Channels are split between threads in whole blocks of the scan backends' SIMD width.
constexpr std::int64_t kChannelBlock = 16;

/// Rows [begin, end) of the (rows, k) weight matrix `weight`, queued for prefetching.
void queue_rows(sdk::util::NextReads& reads, const sdk::TensorView& weight, std::int64_t k, std::int64_t begin,
                std::int64_t end) {
  if (weight.dtype == sdk::DType::kQ8) {
    const auto& matrix = *weight.as<const sdk::QuantizedMatrix>();
    reads.add(reinterpret_cast<const char*>(matrix.values + begin * matrix.row_stride), (end - begin) * matrix.row_stride);
    return;
  }
  const std::int64_t row_bytes = k * static_cast<std::int64_t>(sdk::dtype_size(weight.dtype));
  reads.add(static_cast<const char*>(weight.data) + begin * row_bytes, (end - begin) * row_bytes);
}

}  // namespace

sdk::Status s6_step(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                    const sdk::MixerStepArgs& args, sdk::util::SpeedShares& shares, NegativeExpCache& a_cache) {
  return sdk::guard([&]() -> sdk::Status {
    const std::int64_t B = args.x.shape[0];
    const std::int64_t D = dims.d_model, E = dims.d_inner, N = dims.d_state, R = dims.dt_rank, K = dims.d_conv;
    const std::int64_t W = dims.dbc_width();
    // The weight matrices are read in their stored type; the small parameters as f32.
    for (int i = 0; i < index.count; ++i) {
      const sdk::DType dtype = args.params[i].dtype;
      if (dtype != sdk::DType::kF32 && dtype != sdk::DType::kF16 && dtype != sdk::DType::kBF16 &&
          dtype != sdk::DType::kQ8) {
        return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "mixer/s6 step: parameter %d is %s", i,
                                  sdk::dtype_name(dtype));
      }
    }
    const F32Slices param(context, args.params,
                          {index.in_proj_bias, index.conv_weight, index.conv_bias, index.dt_proj_bias, index.a_log,
                           index.d, index.out_proj_bias});
    const sdk::TensorView* weights = args.params;
    const float* x = args.x.as<const float>();
    float* conv_state = args.state[kConvState].as<float>();
    const sdk::TensorView ssm_state = args.state[kSsmState];

    sdk::WorkspaceArray<float> xz(context, B * 2 * E), xc(context, B * E), dbc(context, B * W), dt(context, B * E),
        y(context, B * E);
    a_cache.reserve(E * N);
    sdk::ScanBackend* scan_kernel = nullptr;  // chosen once for the whole step, run per thread
    MAMBAKIT_RETURN_IF_ERROR(sdk::find_selective_scan(
        context, sdk::selective_scan_problem(context.device, sdk::DType::kF32, B, 1, E, N, false, true), &scan_kernel));
    sdk::Context one_thread = context;  // each thread scans its own channels
    one_thread.n_threads = 1;
    const int threads = std::max(1, context.n_threads);
    std::vector<sdk::Status> statuses(static_cast<std::size_t>(threads), sdk::Status::success());
    const sdk::util::SpeedShares::Plan plan = shares.plan(threads);
    sdk::util::PrefetchingBarrier barrier;
    std::array<double, sdk::util::SpeedShares::kMaxThreads> seconds{};  // each thread's work, waits excluded

#pragma omp parallel num_threads(threads)
    {
      const int thread = omp_get_thread_num(), team = omp_get_num_threads();
      const double start = omp_get_wtime();
      double waited = 0.0;
      const auto [e0, e1] = plan.range(E, kChannelBlock, thread, team);
      const std::int64_t width = e1 - e0;
      const auto [w0, w1] = sdk::util::few_rows_share(plan, W, thread, team);
      const auto [d0, d1] = sdk::util::few_rows_share(plan, D, thread, team);
      // What I read after each barrier, prefetched while I wait at it (each with its own budget).
      std::array<sdk::util::NextReads, 3> next_reads;
      queue_rows(next_reads[0], weights[index.x_proj_weight], E, w0, w1);
      queue_rows(next_reads[1], weights[index.dt_proj_weight], R, e0, e1);
      queue_rows(next_reads[2], weights[index.out_proj_weight], E, d0, d1);
      // The small parameters of my channels (and my rows of in_proj's bias) as f32.
      param.widen(index.in_proj_bias, e0, e1);
      param.widen(index.in_proj_bias, E + e0, E + e1);
      param.widen(index.conv_weight, e0 * K, e1 * K);
      param.widen(index.conv_bias, e0, e1);
      param.widen(index.a_log, e0 * N, e1 * N);
      param.widen(index.d, e0, e1);
      param.widen(index.dt_proj_bias, e0, e1);
      // in_proj, x and z halves of my channels; the conv and A of my channels.
      sdk::util::linear_few_rows_range(x, D, weights[index.in_proj_weight], param.base(index.in_proj_bias), xz.data(),
                                           2 * E, B, D, e0, e1);
      sdk::util::linear_few_rows_range(x, D, weights[index.in_proj_weight], param.base(index.in_proj_bias), xz.data(),
                                           2 * E, B, D, E + e0, E + e1);
      const float* conv_bias = param.base(index.conv_bias);
      for (std::int64_t b = 0; b < B && width > 0; ++b) {
        sdk::util::causal_conv_silu_step(xz.data() + b * 2 * E + e0, 2 * E, param.base(index.conv_weight) + e0 * K,
                              conv_bias != nullptr ? conv_bias + e0 : nullptr, conv_state + (b * E + e0) * K,
                              xc.data() + b * E + e0, std::int64_t{1}, width, K);
      }
      const float* a = a_cache.range(param.base(index.a_log), e0 * N, e1 * N);
      waited += barrier.arrive_and_wait(team, next_reads[0]);
      // x_proj mixes every channel: dt_low | B | C.
      sdk::util::linear_few_rows_range(xc.data(), E, weights[index.x_proj_weight], nullptr, dbc.data(), W, B, E,
                                           w0, w1);
      waited += barrier.arrive_and_wait(team, next_reads[1]);
      // dt_proj and the scan step for my channels.
      sdk::util::linear_few_rows_range(dbc.data(), W, weights[index.dt_proj_weight], nullptr, dt.data(), E, B, R,
                                           e0, e1);
      if (width > 0) {
        sdk::ScanStepArgs scan;
        scan.u = rows_view(xc.data() + e0, B, width, E);
        scan.delta = rows_view(dt.data() + e0, B, width, E);
        scan.A = typed_view(a + e0 * N, {width, N});
        scan.B = rows_view(dbc.data() + R, B, N, W);
        scan.C = rows_view(dbc.data() + R + N, B, N, W);
        scan.D = vector_view(param.base(index.d) != nullptr ? param.base(index.d) + e0 : nullptr, width);
        scan.z = rows_view(xz.data() + E + e0, B, width, 2 * E);
        scan.delta_bias = vector_view(param.base(index.dt_proj_bias) != nullptr ? param.base(index.dt_proj_bias) + e0 : nullptr,
                                      width);
        scan.delta_softplus = true;
        scan.state = ssm_state;
        scan.state.data = ssm_state.as<float>() + e0 * N;
        scan.state.shape[1] = width;
        scan.y = rows_view(y.data() + e0, B, width, E);
        statuses[static_cast<std::size_t>(thread)] = sdk::selective_scan_step(*scan_kernel, one_thread, scan);
      }
      waited += barrier.arrive_and_wait(team, next_reads[2]);
      // out_proj mixes every channel.
      param.widen(index.out_proj_bias, d0, d1);
      sdk::util::linear_few_rows_range(y.data(), E, weights[index.out_proj_weight], param.base(index.out_proj_bias),
                                           args.y.as<float>(), D, B, E, d0, d1);
      if (team == plan.threads()) seconds[static_cast<std::size_t>(thread)] = omp_get_wtime() - start - waited;
    }
    shares.record(plan, seconds.data());
    for (const auto& status : statuses) MAMBAKIT_RETURN_IF_ERROR(status);
    return sdk::Status::success();
  });
}

}  // namespace mambakit::mixer_s6
