// Shared pieces of the native kernels: call geometry, packed parameters, per-item accumulators.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <optional>
#include <vector>

#include "lift_steps.h"

namespace liftpool {

constexpr int64_t kGroup = 8;  // fewest images per item in the images-innermost layout
constexpr int kBandLL = 1, kBandLH = 2, kBandHL = 4, kBandHH = 8;

struct Geometry {
  int64_t N, C, H, W, h, w, K, p, T;  // T: number of (P, U) pairs (1 shared or 3)
  int64_t grp = kGroup;                // images per item in the images-innermost layout
  int mode;
  int64_t nparam() const { return T * 2 * (K + 3); }
  // transform of the horizontal step, the vertical step on L and the vertical step on H
  int64_t th() const { return 0; }
  int64_t tvl() const { return T == 1 ? 0 : 1; }
  int64_t tvh() const { return T == 1 ? 0 : 2; }
};

template <typename T>
inline Lifter<T> lifter_of(const T* params, const Geometry& g, int64_t t, int64_t which, int64_t c) {
  const T* q = params + ((t * 2 + which) * g.C + c) * (g.K + 3);
  return Lifter<T>{q, q[g.K], q[g.K + 1], q[g.K + 2]};
}

// Chosen bands and output coefficients of one call.
struct Bands {
  int mask;
  double scale;
  bool has(int b) const { return (mask & b) != 0; }
};

// pooled = scale * sum of the chosen bands (in the order LL, LH, HL, HH, as the eager path adds).
template <typename T>
inline void write_pooled(const std::array<const T*, 4>& band, int64_t count, int64_t stride, const Bands& bands,
                         T* __restrict out) {
  bool first = true;
  for (int b = 0; b < 4; ++b) {
    if (!bands.has(1 << b)) continue;
    const T* __restrict src = band[b];
    if (first) {
      for (int64_t q = 0; q < count; ++q) out[q] = src[q * stride];
      first = false;
    } else {
      for (int64_t q = 0; q < count; ++q) out[q] += src[q * stride];
    }
  }
  if (bands.scale != 1.0) {
    const T s = static_cast<T>(bands.scale);
    for (int64_t q = 0; q < count; ++q) out[q] *= s;
  }
}

// Per-item lane accumulators: nparam parameter slots then the constraint slots (2D: u_h, p_h, u_v, p_v).
template <typename T>
struct Accumulators {
  std::vector<T> buf;
  int64_t stride = 0, nslot = 0, K = 0, ncons = 4;
  // nparam parameter slots then ncons constraint slots (2 per lifting level: u, p)
  void init(int64_t nparam, int64_t lanes, int64_t K_, int64_t ncons_ = 4) {
    stride = lanes;
    ncons = ncons_;
    nslot = nparam + ncons;
    K = K_;
    buf.assign(static_cast<size_t>(nslot * stride), T(0));
  }
  void zero() { std::fill(buf.begin(), buf.end(), T(0)); }
  T* slot(int64_t s) { return buf.data() + s * stride; }
  GradSlots<T> lifter(int64_t t, int64_t which) { return GradSlots<T>{slot((t * 2 + which) * (K + 3)), stride, K}; }
  T* cons(int64_t k) { return slot(nslot - ncons + k); }
  double sum(int64_t s) {
    double acc = 0.0;
    const T* a = slot(s);
    for (int64_t j = 0; j < stride; ++j) acc += static_cast<double>(a[j]);
    return acc;
  }
};

// ---------------------------------------------------------------------------------- entry points
// Every tensor an op receives: defined, on the CPU (the kernels read it through a CPU pointer) and of a
// floating dtype; a clear error instead of a crash when an op is called directly with anything else.
inline void check_tensor(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.defined(), "liftpool native: ", name, " is an undefined tensor");
  TORCH_CHECK(t.device().is_cpu(), "liftpool native: ", name, " must be a CPU tensor, got device ", t.device());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), "liftpool native: ", name, " must be a floating-point tensor, got ",
              t.scalar_type());
}

// The layout a 2D call runs in: `layout` when it is 1 (plane) or 2 (images innermost), else (0) the shape
// rule: images innermost for maps at most kNbMaxWidth wide and batches of at least kNbMinBatch images.
// Decided here rather than in Python, so a traced or exported graph holds no branch on the sizes.
// Measured (fwd+bwd, 1 thread, N=64): images-innermost / plane time = 0.85 at 16x16, 0.89 at 24x24,
// 1.12 at 32x32, 1.37 at 48x48 (and ~0.6 at 8x8).
constexpr int64_t kNbMaxWidth = 24, kNbMinBatch = 2;
inline int64_t resolve_layout(int64_t layout, int64_t N, int64_t W) {
  TORCH_CHECK(layout >= 0 && layout <= 2,
              "liftpool native: layout must be 0 (by shape), 1 (plane) or 2 (images innermost), got ", layout);
  if (layout != 0) return layout;
  return W <= kNbMaxWidth && N >= kNbMinBatch ? 2 : 1;
}

// Geometry of a call on (N, C, H, W) samples of dtype `dtype` with packed params (T, 2, C, K + 3).
inline Geometry geometry_from(at::IntArrayRef size, at::ScalarType dtype, bool cpu, const at::Tensor& params,
                              int64_t padding) {
  TORCH_CHECK(size.size() == 4, "liftpool native: x must be (N, C, H, W), got shape ", size);
  TORCH_CHECK(params.dim() == 4 && params.size(1) == 2 && params.size(3) >= 4,
              "liftpool native: params must be (T, 2, C, K + 3), got shape ", params.sizes());
  TORCH_CHECK(params.size(0) == 1 || params.size(0) == 3, "liftpool native: params must hold 1 or 3 (P, U) pairs, got ",
              params.size(0));
  TORCH_CHECK(params.size(2) == size[1], "liftpool native: params has ", params.size(2), " channels, x has ", size[1]);
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "liftpool native: x must be float32 or float64, got ",
              dtype);
  TORCH_CHECK(params.scalar_type() == dtype, "liftpool native: params dtype ", params.scalar_type(),
              " differs from x dtype ", dtype);
  TORCH_CHECK(cpu && params.device().is_cpu(), "liftpool native: CPU tensors only");
  TORCH_CHECK(padding >= 0 && padding <= 3, "liftpool native: padding must be 0..3, got ", padding);
  Geometry g;
  g.N = size[0];
  g.C = size[1];
  g.H = size[2];
  g.W = size[3];
  TORCH_CHECK(g.H >= 1 && g.W >= 1, "liftpool native: empty spatial axis, shape ", size);
  TORCH_CHECK(g.C >= 1, "liftpool native: x has no channels (C = 0), shape ", size);
  TORCH_CHECK(g.N >= 0, "liftpool native: negative batch size, shape ", size);
  g.h = (g.H + 1) / 2;
  g.w = (g.W + 1) / 2;
  g.K = params.size(3) - 3;
  TORCH_CHECK(g.K % 2 == 1, "liftpool native: kernel_size must be odd, got ", g.K);
  g.p = g.K / 2;
  g.T = params.size(0);
  g.mode = static_cast<int>(padding);
  return g;
}

inline Geometry geometry_of(const at::Tensor& x, const at::Tensor& params, int64_t padding) {
  TORCH_CHECK(x.dim() == 4, "liftpool native: x must be (N, C, H, W), got shape ", x.sizes());
  return geometry_from(x.sizes(), x.scalar_type(), x.device().is_cpu(), params, padding);
}

inline Bands bands_of(int64_t mask, double scale) {
  TORCH_CHECK(mask >= 1 && mask <= 15, "liftpool native: band mask must be 1..15, got ", mask);
  return Bands{static_cast<int>(mask), scale};
}

// Images per item of the images-innermost layout: enough that a row of the vertical steps (w * G lanes)
// is at least kGroupLanes long (per-item and per-row fixed costs dominate 2x2 and 4x4 maps), never more
// images than the batch has (rounded up to kGroup).  A function of the shape only, so results are the
// same for any thread count.
// Measured (fwd+bwd / MaxPool2d, 1 thread, N=64, alternating processes on a shared machine; ranges of 2-4 runs):
// lanes 8 (the former fixed 8 images): 2x2 5.4-6.2, 4x4 5.0-5.3, 8x8 2.4-3.1; lanes 32: 2.9-4.0, 3.2-4.6,
// 2.0-3.2; lanes 64: 2.6-4.3, 2.4-4.6, 2.1-2.8.
constexpr int64_t kGroupLanes = 64;

inline int64_t group_size(int64_t N, int64_t w) {
  int64_t want = (kGroupLanes + w - 1) / w;
  want = std::max<int64_t>(kGroup, (want + kGroup - 1) / kGroup * kGroup);
  const int64_t batch = (N + kGroup - 1) / kGroup * kGroup;
  // at least 1 (an empty batch, N = 0, has no groups rather than a division by zero)
  return std::max<int64_t>(1, std::min({want, batch, int64_t(64)}));
}

inline int64_t groups_of(const Geometry& g) { return (g.N + g.grp - 1) / g.grp; }

// A mean's denominator: the count, or 1 for an empty batch (the mean of nothing is 0 as in the eager path).
inline double mean_count(int64_t n) { return static_cast<double>(std::max<int64_t>(n, 1)); }

// ---------------------------------------------------------------- parameter lists (no packing in Python)
// The ops take the lifters' own tensors, 4 per lifter (weight (C, 1, K), bias (C), pw_weight (C, 1), pw_bias (C)),
// P then U per transform: 8 (shared) or 24 tensors.  Packing them here, without autograd, replaces a chain of
// cat/stack calls (and their backward) per layer call.
inline at::Tensor pack_params(const std::vector<at::Tensor>& ps, const at::Tensor& x) {
  TORCH_CHECK(ps.size() == 8 || ps.size() == 24 || ps.size() == 56,
              "liftpool native: params must be 8, 24 or 56 tensors (weight, bias, pw_weight, pw_bias per P/U lifter), got ",
              ps.size());
  check_tensor(x, "x");
  TORCH_CHECK(x.dim() >= 3, "liftpool native: x must be (N, C, *spatial), got shape ", x.sizes());
  for (const at::Tensor& p : ps) {
    check_tensor(p, "a parameter tensor");
    TORCH_CHECK(p.scalar_type() == x.scalar_type(), "liftpool native: params dtype ", p.scalar_type(),
                " differs from x dtype ", x.scalar_type());
  }
  const int64_t T = static_cast<int64_t>(ps.size()) / 8;
  TORCH_CHECK(ps[0].dim() == 3 && ps[0].size(1) == 1, "liftpool native: lifter weight must be (C, 1, K), got shape ",
              ps[0].sizes());
  const int64_t C = ps[0].size(0), K = ps[0].size(2), K3 = K + 3;
  TORCH_CHECK(C == x.size(1), "liftpool native: params have ", C, " channels, x has ", x.size(1));
  at::Tensor packed = at::empty({T, 2, C, K3}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "liftpool_pack_params", [&] {
    using S = scalar_t;
    S* out = packed.data_ptr<S>();
    for (int64_t l = 0; l < 2 * T; ++l) {
      const at::Tensor w = ps[4 * l].contiguous(), b = ps[4 * l + 1].contiguous(), pw = ps[4 * l + 2].contiguous(),
                       pb = ps[4 * l + 3].contiguous();
      TORCH_CHECK(w.numel() == C * K && b.numel() == C && pw.numel() == C && pb.numel() == C,
                  "liftpool native: lifter ", l, " parameter shapes ", w.sizes(), ", ", b.sizes(), ", ", pw.sizes(),
                  ", ", pb.sizes(), " do not match C=", C, ", K=", K);
      const S *wp = w.data_ptr<S>(), *bp = b.data_ptr<S>(), *pwp = pw.data_ptr<S>(), *pbp = pb.data_ptr<S>();
      for (int64_t c = 0; c < C; ++c) {
        S* row = out + (l * C + c) * K3;
        for (int64_t k = 0; k < K; ++k) row[k] = wp[c * K + k];
        row[K] = bp[c];
        row[K + 1] = pwp[c];
        row[K + 2] = pbp[c];
      }
    }
  });
  return packed;
}

// Splits packed parameter gradients gp (T, 2, C, K + 3) into one tensor per parameter tensor of `params`
// (their shapes, `like`'s dtype), appended to `out`.
inline void unpack_param_grads(std::vector<at::Tensor>& out, const at::Tensor& gp_in,
                               const std::vector<at::Tensor>& params, const at::Tensor& like) {
  const at::Tensor gp = gp_in.to(like.scalar_type()).contiguous();
  const int64_t T2 = gp.size(0) * gp.size(1), C = gp.size(2), K3 = gp.size(3), K = K3 - 3;
  AT_DISPATCH_FLOATING_TYPES(like.scalar_type(), "liftpool_unpack_grads", [&] {
    using S = scalar_t;
    const S* src = gp.data_ptr<S>();
    for (int64_t l = 0; l < T2; ++l) {
      at::Tensor gw = at::empty(params[4 * l].sizes(), like.options()),
                 gb = at::empty(params[4 * l + 1].sizes(), like.options()),
                 gpw = at::empty(params[4 * l + 2].sizes(), like.options()),
                 gpb = at::empty(params[4 * l + 3].sizes(), like.options());
      S *wp = gw.data_ptr<S>(), *bp = gb.data_ptr<S>(), *pwp = gpw.data_ptr<S>(), *pbp = gpb.data_ptr<S>();
      for (int64_t c = 0; c < C; ++c) {
        const S* row = src + (l * C + c) * K3;
        for (int64_t k = 0; k < K; ++k) wp[c * K + k] = row[k];
        bp[c] = row[K];
        pwp[c] = row[K + 1];
        pbp[c] = row[K + 2];
      }
      out.push_back(gw);
      out.push_back(gb);
      out.push_back(gpw);
      out.push_back(gpb);
    }
  });
}

// Parameter gradients of a backward call: `part` holds per item the np = T * 2 * (K + 3) sums (double);
// channel_of(item) is the item's channel.  Sums the items of each channel in a fixed order (same bits for
// any thread count) into (T, 2, C, K + 3), then unpacks them (unpack_param_grads) into `out`.
template <typename ChannelOf>
void append_param_grads(std::vector<at::Tensor>& out, const at::Tensor& part, const at::Tensor& packed,
                        const std::vector<at::Tensor>& params, ChannelOf channel_of, const at::Tensor& like) {
  const int64_t T = packed.size(0), C = packed.size(2), K3 = packed.size(3);
  const int64_t items = part.size(0), np = part.size(1);
  at::Tensor gp64 = at::zeros({T, 2, C, K3}, part.options());
  const double* sp = part.data_ptr<double>();
  double* gq = gp64.data_ptr<double>();
  for (int64_t it = 0; it < items; ++it) {
    const int64_t c = channel_of(it);
    for (int64_t t2 = 0; t2 < 2 * T; ++t2)
      for (int64_t k = 0; k < K3; ++k) gq[(t2 * C + c) * K3 + k] += sp[it * np + t2 * K3 + k];
  }
  unpack_param_grads(out, gp64, params, like);
}

// An incoming gradient of a backward op, checked against `shape` and brought to x's dtype, contiguous;
// undefined when absent (and, with empty_is_absent, when it has no elements).
inline at::Tensor incoming_grad(const std::optional<at::Tensor>& g, at::IntArrayRef shape, const at::Tensor& x,
                                const char* name, bool empty_is_absent) {
  if (!g.has_value() || !g->defined() || (empty_is_absent && g->numel() == 0)) return at::Tensor();
  check_tensor(*g, name);
  TORCH_CHECK(g->sizes() == shape, "liftpool native: ", name, " shape ", g->sizes(), ", expected ", shape);
  return g->to(x.scalar_type()).contiguous();
}

// The gradient of the constraint sums (u, p) as two doubles; `present` is false for an empty grad_cons (the
// constraint terms have no incoming gradient: their terms are left out of the backward, not multiplied by 0).
struct ConsGrad {
  double u = 0, p = 0;
  bool present = false;
};
inline ConsGrad cons_grad(const at::Tensor& grad_cons) {
  check_tensor(grad_cons, "grad_cons");
  TORCH_CHECK(grad_cons.numel() == 2 || grad_cons.numel() == 0,
              "liftpool native: grad_cons must have 2 elements (or none: no gradient), got ", grad_cons.numel());
  if (grad_cons.numel() == 0) return ConsGrad{};
  const at::Tensor gc = grad_cons.to(at::kDouble).contiguous();
  return ConsGrad{gc.data_ptr<double>()[0], gc.data_ptr<double>()[1], true};
}

}  // namespace liftpool
