// The chunked SSD forward and backward (see ssd_chunked_math.hpp for the equations), in
// parallel over (row, head) pairs; each pair's chunks run in order on one thread, and what
// several pairs add to (grad_B, grad_C, grad_A, grad_D) is summed by ssd_common::HeadPartials
// in a fixed order, so the result does not depend on the thread count.

#include "ssd_chunked_math.hpp"

#include <omp.h>

#include "mambakit/sdk/util/linear.hpp"
#include "mambakit/sdk/util/panel_product.hpp"

namespace mambakit::ssd_chunked {

using ssd_common::Dims;
using ssd_common::Rows;
using sdk::util::panel_product;

template <class T>
void chunked_forward(const sdk::Context& context, const sdk::SsdForwardArgs& args) {
  sdk::util::set_gemm_threads(1);  // the threads run (row, head) pairs; each product is small
  const Dims d = ssd_common::dims_of(args);
  const Rows<const T> x(args.x), dt(args.dt), Bm(args.B), Cm(args.C);
  const Rows<T> y(args.y);
  const T* A = args.A.as<const T>();
  const T* D = args.D.as<const T>();
  const GroupProducts<T> products(context, d, args);
#pragma omp parallel num_threads(context.n_threads)
  {
    ChunkDecay<T> decay;
    Matrix<T> S(d.P, d.N), ST(d.N, d.P), xdw, m;  // ST: the state transposed, (N, P)
#pragma omp for schedule(static)
    for (std::int64_t task = 0; task < d.B * d.H; ++task) {
      const std::int64_t b = task / d.H, h = task % d.H, g = d.group_of(h);
      ssd_common::load_state<T>(args.initial_state, task, S);
      ST = S.transpose();
      for (std::int64_t c = 0; c < products.chunks(); ++c) {
        const std::int64_t t0 = c * kChunk, q = std::min(kChunk, d.L - t0);
        decay.prepare(dt, b, h, A[h], t0, q);
        const T* X = x.at(b, t0) + h * d.P;
        const T* Bc = Bm.at(b, t0) + g * d.N;
        const T* Cc = Cm.at(b, t0) + g * d.N;
        T* Y = y.at(b, t0) + h * d.P;
        // Y = (M diag(dt) + D I) X + diag(exp(cs)) C S^T: the first product writes Y.
        m.noalias() = products.at(b, g, c, q).cwiseProduct(decay.mask) * decay.dt.asDiagonal();
        if (D != nullptr) m.diagonal().array() += D[h];
        panel_product<T>(q, d.P, q, {m.data(), q, 1}, X, x.row_stride,
                         {Y, y.row_stride, T(1), nullptr, /*overwrite=*/true}, /*causal=*/true);
        panel_product<T>(q, d.P, d.N, {Cc, Cm.row_stride, 1}, ST.data(), d.P,
                         {Y, y.row_stride, T(1), decay.exp_cs.data()});
        // S' = exp(cs_last) S + (diag(w dt) X)^T B, as S'^T = exp(cs_last) S^T + B^T diag(w dt) X.
        xdw = (decay.w.array() * decay.dt.array()).matrix().asDiagonal() * rows_block(x, b, t0, h * d.P, q, d.P);
        panel_product<T>(d.N, d.P, q, {Bc, 1, Bm.row_stride}, xdw.data(), d.P, {ST.data(), d.P, decay.exp_last});
      }
      if (args.final_state.present()) {
        Eigen::Map<Matrix<T>>(args.final_state.as<T>() + task * d.state_size(), d.P, d.N) = ST.transpose();
      }
    }
  }
}

template <class T>
void chunked_backward(const sdk::Context& context, const sdk::SsdBackwardArgs& args) {
  sdk::util::set_gemm_threads(1);
  const sdk::SsdForwardArgs& in = args.forward;
  const Dims d = ssd_common::dims_of(in);
  const Rows<const T> x(in.x), dt(in.dt), Bm(in.B), Cm(in.C), gy(args.grad_y);
  const Rows<T> gx(args.grad_x), gdt(args.grad_dt);
  const T* A = in.A.as<const T>();
  const T* D = in.D.as<const T>();
  const GroupProducts<T> products(context, d, in);
  ssd_common::HeadPartials<T> partials(context, d, args);
  const std::int64_t chunks = products.chunks(), size = d.state_size();
  const Eigen::OuterStride<> partial_stride(d.H * d.N);
  // Each thread's states entering each chunk of its current (row, head), P rows each.
  sdk::WorkspaceArray<T> entering_states(context, context.n_threads * chunks * size);
#pragma omp parallel num_threads(context.n_threads)
  {
    ChunkDecay<T> decay;
    Eigen::Map<Matrix<T>> entering(entering_states.data() + omp_get_thread_num() * chunks * size, chunks * d.P, d.N);
    Matrix<T> S(d.P, d.N), dS(d.P, d.N), dS_in(d.P, d.N);
    Matrix<T> xd, xdw, m, dM, dxd, dx, dcb, dseg, dB, dC, Z, dZ, T1;
    Vector<T> dcs, dw;
#pragma omp for schedule(static)
    for (std::int64_t task = 0; task < d.B * d.H; ++task) {
      const std::int64_t b = task / d.H, h = task % d.H, g = d.group_of(h);
      // Forward over the chunk states only.
      ssd_common::load_state<T>(in.initial_state, task, S);
      for (std::int64_t c = 0; c < chunks; ++c) {
        const std::int64_t t0 = c * kChunk, q = std::min(kChunk, d.L - t0);
        entering.middleRows(c * d.P, d.P) = S;
        decay.prepare(dt, b, h, A[h], t0, q);
        xdw = (decay.dt.array() * decay.w.array()).matrix().asDiagonal() * rows_block(x, b, t0, h * d.P, q, d.P);
        S *= decay.exp_last;
        S.noalias() += xdw.transpose() * rows_block(Bm, b, t0, g * d.N, q, d.N);
      }
      ssd_common::load_state<T>(args.grad_final_state, task, dS);
      T grad_a = 0, grad_d = 0;
      for (std::int64_t c = chunks - 1; c >= 0; --c) {
        const std::int64_t t0 = c * kChunk, q = std::min(kChunk, d.L - t0);
        decay.prepare(dt, b, h, A[h], t0, q);
        const auto X = rows_block(x, b, t0, h * d.P, q, d.P);
        const auto Bc = rows_block(Bm, b, t0, g * d.N, q, d.N);
        const auto Cc = rows_block(Cm, b, t0, g * d.N, q, d.N);
        const auto dY = rows_block(gy, b, t0, h * d.P, q, d.P);
        const auto S_in = entering.middleRows(c * d.P, d.P);
        const auto cb = products.at(b, g, c, q);
        xd = decay.dt.asDiagonal() * X;
        m = cb.cwiseProduct(decay.mask);
        dx.setZero(q, d.P);
        if (D != nullptr) {
          grad_d += dY.cwiseProduct(X).sum();
          dx = D[h] * dY;
        }
        // Within the chunk: Y = M Xd.
        dM.noalias() = dY * xd.transpose();
        dxd.noalias() = m.transpose() * dY;
        dcb = dM.cwiseProduct(decay.mask);
        dseg = dM.cwiseProduct(m);
        dcs = dseg.rowwise().sum() - dseg.colwise().sum().transpose();
        dC.noalias() = dcb * Bc;
        dB.noalias() = dcb.transpose() * Cc;
        // From the entering state: Y += diag(exp(cs)) C S^T.
        Z.noalias() = Cc * S_in.transpose();
        dZ = decay.exp_cs.asDiagonal() * dY;
        dC.noalias() += dZ * S_in;
        dcs += dZ.cwiseProduct(Z).rowwise().sum();
        dS_in.noalias() = dZ.transpose() * Cc;
        // The leaving state: S' = exp(cs_last) S + (diag(w) Xd)^T B.
        dS_in += decay.exp_last * dS;
        T grad_last = decay.exp_last * dS.cwiseProduct(S_in).sum();
        T1.noalias() = Bc * dS.transpose();
        dxd += decay.w.asDiagonal() * T1;
        dw = xd.cwiseProduct(T1).rowwise().sum();
        xdw = decay.w.asDiagonal() * xd;
        dB.noalias() += xdw * dS;
        const Vector<T> dw_w = dw.cwiseProduct(decay.w);
        grad_last += dw_w.sum();
        dcs -= dw_w;
        dcs[q - 1] += grad_last;
        // cs = cumsum(dt A), Xd = diag(dt) X.
        T running = 0;
        for (std::int64_t s = q - 1; s >= 0; --s) {
          running += dcs[s];  // d/d a_s
          grad_a += running * decay.dt[s];
          if (gdt.present()) gdt.at(b, t0 + s)[h] += running * A[h] + dxd.row(s).dot(X.row(s));
        }
        dx += decay.dt.asDiagonal() * dxd;
        if (gx.present()) rows_block(gx, b, t0, h * d.P, q, d.P) += dx;
        if (T* out = partials.grad_b(b, t0, h)) RowsMap<T>(out, q, d.N, partial_stride) = dB;
        if (T* out = partials.grad_c(b, t0, h)) RowsMap<T>(out, q, d.N, partial_stride) = dC;
        dS = dS_in;
      }
      partials.grad_a(b, h) = grad_a;
      partials.grad_d(b, h) = grad_d;
      if (args.grad_initial_state.present()) {
        Eigen::Map<Matrix<T>>(args.grad_initial_state.as<T>() + task * size, d.P, d.N) += dS;
      }
    }
  }
  partials.reduce_into(args, context.n_threads);
}

template void chunked_forward<float>(const sdk::Context&, const sdk::SsdForwardArgs&);
template void chunked_forward<double>(const sdk::Context&, const sdk::SsdForwardArgs&);
template void chunked_backward<float>(const sdk::Context&, const sdk::SsdBackwardArgs&);
template void chunked_backward<double>(const sdk::Context&, const sdk::SsdBackwardArgs&);

}  // namespace mambakit::ssd_chunked
