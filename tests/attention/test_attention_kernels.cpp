// The attention kernels (kind "attention"): forward against the definition written out in
// double precision here (scores, softmax, weighted values, log-sum-exp), for several shapes:
// grouped-query and multi-query heads, ragged positions, one new token (decode) and a few,
// long sequences over several query and key blocks, head sizes that are not a whole SIMD
// vector, and strided views; the f64 backward against central finite differences of the f64
// forward; the f32 backward against the f64 one; thread-count independence; and the argument
// checks of attention_calls.hpp. Cache entries past p_b + L are NaN: a kernel that read them would fail.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "fixtures.hpp"
#include "gradient_check.hpp"
#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/attention_calls.hpp"
#include "test_workspace.hpp"

namespace {

namespace sdk = mambakit::sdk;
using mambakit::KernelPtr;

std::vector<std::string> attention_names() {
  return mambakit::test::in_tree_plugins().kernel_names(sdk::kAttentionKind);
}

KernelPtr create_attention(const std::string& name) {
  return mambakit::test::in_tree_plugins().create_kernel(sdk::kAttentionKind, name, "{}");
}

struct Shape {
  std::int64_t batch, length, heads, heads_kv, head_dim;
  std::vector<std::int64_t> positions;
  [[nodiscard]] std::int64_t capacity() const {
    return *std::max_element(positions.begin(), positions.end()) + length + 3;
  }
  [[nodiscard]] std::string label() const {
    std::ostringstream text;
    text << "B " << batch << ", L " << length << ", H " << heads << ", Hkv " << heads_kv << ", hd " << head_dim
         << ", positions";
    for (auto p : positions) text << " " << p;
    return text.str();
  }
};

/// A problem with its own buffers of element type T. Rows are padded (strided views): q's and
/// out's rows hold H * hd + 3 elements, the caches' Hkv * hd + 5.
template <class T>
struct Problem {
  Shape s;
  std::int64_t capacity, q_row, kv_row;
  std::vector<T> q, k, v, out, lse, grad_out, grad_q, grad_k, grad_v;
  std::vector<std::int64_t> positions;

  Problem(const Shape& shape, std::uint32_t seed)
      : s(shape), capacity(shape.capacity()), q_row(shape.heads * shape.head_dim + 3),
        kv_row(shape.heads_kv * shape.head_dim + 5), positions(shape.positions) {
    const auto q_size = static_cast<std::size_t>(s.batch * s.length * q_row);
    const auto kv_size = static_cast<std::size_t>(s.batch * capacity * kv_row);
    q.assign(q_size, T(0));
    out.assign(q_size, T(0));
    grad_out.assign(q_size, T(0));
    grad_q.assign(q_size, T(0));
    k.assign(kv_size, T(NAN));
    v.assign(kv_size, T(NAN));
    grad_k.assign(kv_size, T(0));
    grad_v.assign(kv_size, T(0));
    lse.assign(static_cast<std::size_t>(s.batch * s.heads * s.length), T(0));
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal;
    for (std::int64_t b = 0; b < s.batch; ++b) {
      for (std::int64_t t = 0; t < s.length; ++t) {
        for (std::int64_t e = 0; e < s.heads * s.head_dim; ++e) {
          q[static_cast<std::size_t>((b * s.length + t) * q_row + e)] = static_cast<T>(normal(rng));
          grad_out[static_cast<std::size_t>((b * s.length + t) * q_row + e)] = static_cast<T>(normal(rng));
        }
      }
      for (std::int64_t t = 0; t < positions[static_cast<std::size_t>(b)] + s.length; ++t) {
        for (std::int64_t e = 0; e < s.heads_kv * s.head_dim; ++e) {
          k[static_cast<std::size_t>((b * capacity + t) * kv_row + e)] = static_cast<T>(normal(rng));
          v[static_cast<std::size_t>((b * capacity + t) * kv_row + e)] = static_cast<T>(normal(rng));
        }
      }
    }
  }

  /// Copies the inputs of another problem of the same shape (converting the element type).
  template <class U>
  void copy_inputs(const Problem<U>& other) {
    auto convert = [](const std::vector<U>& from, std::vector<T>& to) {
      std::transform(from.begin(), from.end(), to.begin(), [](U value) { return static_cast<T>(value); });
    };
    convert(other.q, q);
    convert(other.k, k);
    convert(other.v, v);
    convert(other.grad_out, grad_out);
  }

  [[nodiscard]] T scale() const { return static_cast<T>(1.0 / std::sqrt(static_cast<double>(s.head_dim))); }

  sdk::TensorView rows(std::vector<T>& data, std::int64_t length, std::int64_t heads, std::int64_t row) {
    sdk::TensorView view = sdk::make_view(data.data(), sizeof(T) == 8 ? sdk::DType::kF64 : sdk::DType::kF32,
                                          sdk::Device{}, {s.batch, length, heads, s.head_dim});
    view.strides[1] = row;
    view.strides[0] = length * row;
    return view;
  }
  sdk::AttentionForwardArgs forward_args(bool with_lse = true) {
    sdk::AttentionForwardArgs args;
    args.q = rows(q, s.length, s.heads, q_row);
    args.k = rows(k, capacity, s.heads_kv, kv_row);
    args.v = rows(v, capacity, s.heads_kv, kv_row);
    args.positions = sdk::make_view(positions.data(), sdk::DType::kI64, sdk::Device{}, {s.batch});
    args.softmax_scale = static_cast<double>(scale());
    args.out = rows(out, s.length, s.heads, q_row);
    if (with_lse) {
      args.lse = sdk::make_view(lse.data(), sizeof(T) == 8 ? sdk::DType::kF64 : sdk::DType::kF32, sdk::Device{},
                                {s.batch, s.heads, s.length});
    }
    return args;
  }
  sdk::AttentionBackwardArgs backward_args() {
    sdk::AttentionBackwardArgs args;
    args.forward = forward_args();
    args.grad_out = rows(grad_out, s.length, s.heads, q_row);
    args.grad_q = rows(grad_q, s.length, s.heads, q_row);
    args.grad_k = rows(grad_k, capacity, s.heads_kv, kv_row);
    args.grad_v = rows(grad_v, capacity, s.heads_kv, kv_row);
    return args;
  }

  T& q_at(std::int64_t b, std::int64_t i, std::int64_t h, std::int64_t e) {
    return q[static_cast<std::size_t>((b * s.length + i) * q_row + h * s.head_dim + e)];
  }
  T& kv_at(std::vector<T>& cache, std::int64_t b, std::int64_t j, std::int64_t g, std::int64_t e) {
    return cache[static_cast<std::size_t>((b * capacity + j) * kv_row + g * s.head_dim + e)];
  }
  T& out_at(std::vector<T>& data, std::int64_t b, std::int64_t i, std::int64_t h, std::int64_t e) {
    return data[static_cast<std::size_t>((b * s.length + i) * q_row + h * s.head_dim + e)];
  }

  /// The elements of `data` that are part of the tensor (the row padding and unheld cache left out).
  std::vector<T> held(std::vector<T>& data, bool cache) {
    std::vector<T> values;
    for (std::int64_t b = 0; b < s.batch; ++b) {
      const std::int64_t count = cache ? positions[static_cast<std::size_t>(b)] + s.length : s.length;
      for (std::int64_t t = 0; t < count; ++t) {
        for (std::int64_t e = 0; e < (cache ? s.heads_kv : s.heads) * s.head_dim; ++e) {
          values.push_back(data[static_cast<std::size_t>((b * (cache ? capacity : s.length) + t) *
                                                         (cache ? kv_row : q_row) + e)]);
        }
      }
    }
    return values;
  }
};

/// The definition, in double: out and lse of every query.
template <class T>
void reference_forward(Problem<T>& p, std::vector<double>& out, std::vector<double>& lse) {
  const Shape& s = p.s;
  out.assign(static_cast<std::size_t>(s.batch * s.length * s.heads * s.head_dim), 0.0);
  lse.assign(static_cast<std::size_t>(s.batch * s.heads * s.length), 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  for (std::int64_t b = 0; b < s.batch; ++b) {
    for (std::int64_t h = 0; h < s.heads; ++h) {
      const std::int64_t g = h / (s.heads / s.heads_kv);
      for (std::int64_t i = 0; i < s.length; ++i) {
        const std::int64_t n = s.positions[static_cast<std::size_t>(b)] + i + 1;
        std::vector<double> scores(static_cast<std::size_t>(n));
        for (std::int64_t j = 0; j < n; ++j) {
          double dot = 0.0;
          for (std::int64_t e = 0; e < s.head_dim; ++e) dot += double(p.q_at(b, i, h, e)) * double(p.kv_at(p.k, b, j, g, e));
          scores[static_cast<std::size_t>(j)] = scale * dot;
        }
        const double largest = *std::max_element(scores.begin(), scores.end());
        double total = 0.0;
        for (double score : scores) total += std::exp(score - largest);
        lse[static_cast<std::size_t>((b * s.heads + h) * s.length + i)] = largest + std::log(total);
        for (std::int64_t e = 0; e < s.head_dim; ++e) {
          double sum = 0.0;
          for (std::int64_t j = 0; j < n; ++j) {
            sum += std::exp(scores[static_cast<std::size_t>(j)] - largest) / total * double(p.kv_at(p.v, b, j, g, e));
          }
          out[static_cast<std::size_t>(((b * s.length + i) * s.heads + h) * s.head_dim + e)] = sum;
        }
      }
    }
  }
}

/// max |a - b| / max(|b|, 1e-3).
double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0, scale = 1e-3;
  for (double value : b) scale = std::max(scale, std::abs(value));
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double difference = std::abs(a[i] - b[i]);
    worst = std::isnan(difference) ? INFINITY : std::max(worst, difference);
  }
  return worst / scale;
}

template <class T>
std::vector<double> as_double(const std::vector<T>& values) {
  return std::vector<double>(values.begin(), values.end());
}

/// out of a problem in the reference's (B, L, H, hd) order without row padding.
template <class T>
std::vector<double> packed_out(Problem<T>& p) {
  return as_double(p.held(p.out, false));
}

const std::vector<Shape> kShapes = {
    {2, 5, 4, 2, 8, {3, 0}},             // GQA, ragged rows
    {3, 1, 6, 2, 64, {0, 17, 100}},      // decode, GQA
    {2, 1, 4, 4, 20, {40, 5}},           // decode, head_dim not a whole vector
    {1, 150, 2, 1, 20, {70}},            // several query and key blocks, MQA
    {2, 70, 3, 3, 128, {0, 9}},          // wide heads
    {1, 33, 8, 1, 16, {0}},              // multi-query, no history
    {2, 7, 2, 1, 3, {64, 1}},            // tiny heads, a row starting at a block boundary
    {2, 3, 4, 2, 16, {30, 0}},           // a few new tokens per row (run as decodes)
    {1, 4, 2, 1, 8, {200}},              // a few new tokens after a long history
};

}  // namespace

TEST_CASE("every attention kernel matches the definition, f32 and f64") {
  for (const auto& name : attention_names()) {
    auto kernel = create_attention(name);
    for (const Shape& shape : kShapes) {
      INFO("attention/" << name << ", " << shape.label());
      mambakit::test::TestWorkspace workspace;
      const sdk::Context context = mambakit::test::kernel_context(*kernel, workspace, 2);
      Problem<float> single(shape, 11);
      Problem<double> twice(shape, 11);
      std::vector<double> expected_out, expected_lse;
      reference_forward(twice, expected_out, expected_lse);

      auto single_args = single.forward_args();
      sdk::Status status = sdk::attention_forward(context, single_args);
      INFO(status.message);
      REQUIRE(status.ok());
      CHECK(relative_error(packed_out(single), expected_out) < 2e-6);
      CHECK(relative_error(as_double(single.lse), expected_lse) < 2e-6);

      status = sdk::attention_forward(context, twice.forward_args());
      REQUIRE(status.ok());
      CHECK(relative_error(packed_out(twice), expected_out) < 1e-13);
      CHECK(relative_error(twice.lse, expected_lse) < 1e-13);
      CHECK(workspace.live() == 0);
    }
  }
}

TEST_CASE("attention backward matches finite differences of the f64 forward, for every kernel") {
  // Loss: sum(out * grad_out), so that backward's gradients are the loss's.
  const std::vector<Shape> shapes = {{2, 5, 4, 2, 8, {3, 0}}, {1, 70, 2, 1, 5, {3}}, {2, 1, 2, 2, 4, {6, 0}}};
  for (const auto& name : attention_names()) {
    auto kernel = create_attention(name);
    for (const Shape& shape : shapes) {
      INFO("attention/" << name << ", " << shape.label());
      mambakit::test::TestWorkspace workspace;
      const sdk::Context context = mambakit::test::kernel_context(*kernel, workspace, 2);
      Problem<double> p(shape, 5);
      REQUIRE(sdk::attention_forward(context, p.forward_args(), true).ok());
      const sdk::Status status = sdk::attention_backward(context, p.backward_args());
      INFO(status.message);
      REQUIRE(status.ok());
      auto loss = [&] {
        Problem<double> copy = p;
        REQUIRE(sdk::attention_forward(context, copy.forward_args(false)).ok());
        return mambakit::test::weighted_sum(copy.out, copy.grad_out);
      };
      struct Checked {
        const char* name;
        std::vector<double>* values;
        std::vector<double>* gradient;
        bool cache;
      };
      for (const Checked& c : {Checked{"q", &p.q, &p.grad_q, false}, Checked{"k", &p.k, &p.grad_k, true},
                               Checked{"v", &p.v, &p.grad_v, true}}) {
        // Perturb only the held elements: the row padding and the unheld cache stay as they are.
        std::vector<double> numeric;
        std::vector<double> analytic = p.held(*c.gradient, c.cache);
        const std::int64_t rows = c.cache ? p.capacity : shape.length;
        const std::int64_t row = c.cache ? p.kv_row : p.q_row;
        const std::int64_t width = (c.cache ? shape.heads_kv : shape.heads) * shape.head_dim;
        for (std::int64_t b = 0; b < shape.batch; ++b) {
          const std::int64_t count = c.cache ? shape.positions[static_cast<std::size_t>(b)] + shape.length : shape.length;
          for (std::int64_t t = 0; t < count; ++t) {
            std::vector<double> slice(static_cast<std::size_t>(width));
            const std::size_t offset = static_cast<std::size_t>((b * rows + t) * row);
            std::copy_n(c.values->begin() + static_cast<std::ptrdiff_t>(offset), width, slice.begin());
            auto element_loss = [&] {
              std::copy(slice.begin(), slice.end(), c.values->begin() + static_cast<std::ptrdiff_t>(offset));
              return loss();
            };
            const auto quotients = mambakit::test::finite_differences(slice, element_loss);
            std::copy(slice.begin(), slice.end(), c.values->begin() + static_cast<std::ptrdiff_t>(offset));
            numeric.insert(numeric.end(), quotients.begin(), quotients.end());
          }
        }
        const auto comparison = mambakit::test::compare_gradient(analytic, numeric);
        INFO("grad_" << c.name << ": max error " << comparison.max_error << " of " << comparison.max_gradient);
        CHECK(comparison.passes());
      }
    }
  }
}

TEST_CASE("attention's f32 backward matches its f64 backward, and neither depends on the thread count") {
  const std::vector<Shape> shapes = {{2, 150, 4, 2, 64, {0, 37}}, {1, 90, 2, 2, 20, {200}}, {3, 1, 4, 1, 32, {5, 0, 70}}};
  for (const auto& name : attention_names()) {
    auto kernel = create_attention(name);
    for (const Shape& shape : shapes) {
      INFO("attention/" << name << ", " << shape.label());
      mambakit::test::TestWorkspace workspace;
      Problem<double> twice(shape, 3);
      const sdk::Context context2 = mambakit::test::kernel_context(*kernel, workspace, 2);
      REQUIRE(sdk::attention_forward(context2, twice.forward_args(), true).ok());
      REQUIRE(sdk::attention_backward(context2, twice.backward_args()).ok());

      Problem<float> one(shape, 3), two(shape, 3);
      one.copy_inputs(twice);
      two.copy_inputs(twice);
      const sdk::Context context1 = mambakit::test::kernel_context(*kernel, workspace, 1);
      REQUIRE(sdk::attention_forward(context1, one.forward_args(), true).ok());
      REQUIRE(sdk::attention_backward(context1, one.backward_args()).ok());
      REQUIRE(sdk::attention_forward(context2, two.forward_args(), true).ok());
      REQUIRE(sdk::attention_backward(context2, two.backward_args()).ok());
      for (auto [f32, f64, cache] : {std::tuple{&two.grad_q, &twice.grad_q, false},
                                     std::tuple{&two.grad_k, &twice.grad_k, true},
                                     std::tuple{&two.grad_v, &twice.grad_v, true}}) {
        CHECK(mambakit::test::precision_error(two.held(*f32, cache), twice.held(*f64, cache)) <
              mambakit::test::kPrecisionRtol);
      }
      CHECK(one.out == two.out);
      CHECK(one.lse == two.lse);
      CHECK(one.grad_q == two.grad_q);
      CHECK(one.held(one.grad_k, true) == two.held(two.grad_k, true));
      CHECK(one.held(one.grad_v, true) == two.held(two.grad_v, true));
    }
  }
}

TEST_CASE("attention backward accumulates into its gradients and leaves the unheld cache alone") {
  for (const auto& name : attention_names()) {
    auto kernel = create_attention(name);
    mambakit::test::TestWorkspace workspace;
    const sdk::Context context = mambakit::test::kernel_context(*kernel, workspace, 2);
    Problem<double> p({2, 9, 2, 1, 8, {4, 0}}, 9);
    REQUIRE(sdk::attention_forward(context, p.forward_args(), true).ok());
    REQUIRE(sdk::attention_backward(context, p.backward_args()).ok());
    const auto first_q = p.grad_q, first_k = p.grad_k;
    REQUIRE(sdk::attention_backward(context, p.backward_args()).ok());
    for (std::size_t i = 0; i < first_q.size(); ++i) CHECK(p.grad_q[i] == Approx(2 * first_q[i]).margin(1e-14));
    for (std::size_t i = 0; i < first_k.size(); ++i) CHECK(p.grad_k[i] == Approx(2 * first_k[i]).margin(1e-14));
    // Row 1 holds 9 tokens: its cache entries from 9 on received nothing.
    for (std::int64_t j = 9; j < p.capacity; ++j) CHECK(p.kv_at(p.grad_k, 1, j, 0, 0) == 0.0);
  }
}

TEST_CASE("attention_calls.hpp rejects malformed arguments with a message naming the problem") {
  auto kernel = create_attention("naive");
  mambakit::test::TestWorkspace workspace;
  const sdk::Context context = mambakit::test::kernel_context(*kernel, workspace, 1);
  Problem<float> p({2, 4, 4, 2, 8, {3, 0}}, 1);
  auto expect_error = [&](const sdk::AttentionForwardArgs& args, const char* words) {
    const sdk::Status status = sdk::attention_forward(context, args);
    INFO(status.message);
    CHECK_FALSE(status.ok());
    CHECK(std::string(status.message).find(words) != std::string::npos);
  };
  auto args = p.forward_args();
  p.positions[0] = p.capacity - 3;  // 4 new tokens do not fit
  expect_error(args, "needs a cache of at least");
  p.positions[0] = -1;
  expect_error(args, "row 0 is at position -1");
  p.positions[0] = 3;
  args = p.forward_args();
  args.softmax_scale = 0;
  expect_error(args, "softmax_scale");
  args = p.forward_args();
  args.k.shape[2] = 3;  // 3 kv heads for 4 query heads
  expect_error(args, "Hkv dividing H");
  args = p.forward_args();
  args.lse.shape[2] = 5;
  expect_error(args, "attention lse has shape");
  args = p.forward_args();
  args.q.strides[2] = 9;
  expect_error(args, "must be contiguous");

  sdk::AttentionBackwardArgs backward = p.backward_args();
  backward.forward.lse = sdk::TensorView{};
  const sdk::Status status = sdk::attention_backward(context, backward);
  CHECK_FALSE(status.ok());
  CHECK(std::string(status.message).find("needs the lse") != std::string::npos);
}

TEST_CASE("the host picks attention/blocked over attention/naive") {
  sdk::AttentionShape shape;
  shape.batch = 1;
  shape.length = 16;
  shape.heads = 4;
  shape.heads_kv = 2;
  shape.head_dim = 64;
  shape.capacity = 16;
  const sdk::KernelProblem problem = sdk::attention_problem(sdk::Device{}, sdk::DType::kF32, shape, true);
  const auto blocked = create_attention("blocked"), naive = create_attention("naive");
  CHECK(blocked->score(problem) > naive->score(problem));
  CHECK(naive->score(problem) > 0);
  sdk::Device gpu;
  gpu.type = sdk::DeviceType::kCuda;
  CHECK(blocked->score(sdk::attention_problem(gpu, sdk::DType::kF32, shape)) == 0);
}
