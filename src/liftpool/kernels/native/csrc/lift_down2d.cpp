// Fused CPU LiftDownPool2d with learned P/U: forward and backward (liftpool.kernels.native).
//
// Work items run under at::parallel_for; every item keeps its whole computation in thread-local
// buffers (L1/L2) and writes only the requested outputs:
//   * plane layout (layout = 1): one (n, c) plane per item; horizontal step row by row along the
//     contiguous axis (hrow_*), the two vertical steps over rows of w lanes (rows_*);
//   * images-innermost layout (layout = 2, small maps): up to kGroup images of one channel per
//     item, interleaved innermost (X[r][col][g]) so that every step runs over rows of G (horizontal)
//     or w * G (vertical) lanes.
// Backward saves nothing but the input and the parameters: each item recomputes its forward,
// runs the vertical backward right after each vertical recompute, then the horizontal backward.
// Parameter gradients: per-lane partial sums per item, reduced over lanes and then over items in a
// fixed order in double, so the result is the same bits for any thread count and run to run.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <array>
#include <optional>
#include <vector>

#include "lift_steps.h"

namespace liftpool {
namespace {

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
Lifter<T> lifter_of(const T* params, const Geometry& g, int64_t t, int64_t which, int64_t c) {
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

// Per-item lane accumulators: nparam parameter slots then 4 constraint slots (u_h, p_h, u_v, p_v).
template <typename T>
struct Accumulators {
  std::vector<T> buf;
  int64_t stride = 0, nslot = 0, K = 0;
  void init(int64_t nparam, int64_t lanes, int64_t K_) {
    stride = lanes;
    nslot = nparam + 4;
    K = K_;
    buf.assign(static_cast<size_t>(nslot * stride), T(0));
  }
  void zero() { std::fill(buf.begin(), buf.end(), T(0)); }
  T* slot(int64_t s) { return buf.data() + s * stride; }
  GradSlots<T> lifter(int64_t t, int64_t which) { return GradSlots<T>{slot((t * 2 + which) * (K + 3)), stride, K}; }
  T* cons(int64_t k) { return slot(nslot - 4 + k); }
  double sum(int64_t s) {
    double acc = 0.0;
    const T* a = slot(s);
    for (int64_t j = 0; j < stride; ++j) acc += static_cast<double>(a[j]);
    return acc;
  }
};

// Gradients of the four bands of one item from the pooled gradient and the detail gradients.
struct BandGrads {
  double coef[4];  // d pooled / d band
};

// ---------------------------------------------------------------------------------- plane layout
template <typename T>
struct PlaneWork {
  Geometry g;
  int64_t wp, hs;  // padded row length, row stride of horizontal intermediates (0: not kept)
  std::vector<int64_t> idx_w, idx_h;
  std::vector<T> E, O, haP, hpP, D, haU, hpU, S;
  std::vector<T> vaP, vpP, vaU, vpU, LL, LH, HL, HH;
  std::vector<T> gS, gD, gB0, gB1, vgd, ga, gtail, gEp, gDp, gO, zero, dump;
  std::vector<const T*> ptr;
  std::vector<T*> gptr;
  Accumulators<T> acc;

  PlaneWork(const Geometry& geo, bool backward) : g(geo) {
    const int64_t H = g.H, h = g.h, w = g.w, p = g.p;
    wp = w + 2 * p;
    hs = backward ? 1 : 0;
    pad_table(idx_w, w, p, g.mode);
    pad_table(idx_h, h, p, g.mode);
    const size_t rows = static_cast<size_t>(backward ? H : 1);
    E.resize(rows * wp);
    O.resize(rows * w);
    haP.resize(rows * w);
    hpP.resize(rows * w);
    haU.resize(rows * w);
    hpU.resize(rows * w);
    D.resize(static_cast<size_t>(H * wp));
    S.resize(static_cast<size_t>(H * w));
    const size_t vrows = static_cast<size_t>(backward ? h : 1);
    for (auto* v : {&vaP, &vpP, &vaU, &vpU}) v->resize(vrows * w);
    for (auto* v : {&LL, &LH, &HL, &HH}) v->resize(static_cast<size_t>(h * w));
    zero.assign(static_cast<size_t>(w), T(0));
    dump.resize(static_cast<size_t>(w));
    ptr.resize(static_cast<size_t>(h + 2 * p));
    gptr.resize(static_cast<size_t>(h + 2 * p));
    if (backward) {
      gS.resize(static_cast<size_t>(H * w));
      gD.resize(static_cast<size_t>(H * w));
      for (auto* v : {&gB0, &gB1, &vgd}) v->resize(static_cast<size_t>(h * w));
      for (auto* v : {&ga, &gtail, &gO}) v->resize(static_cast<size_t>(w));
      gEp.resize(static_cast<size_t>(wp));
      gDp.resize(static_cast<size_t>(wp));
    }
    acc.init(g.nparam(), w, g.K);
  }

  HRow<T> hrow(int64_t r) {
    const int64_t q = r * hs, w = g.w;
    return HRow<T>{E.data() + q * wp,      O.data() + q * w,   haP.data() + q * w,  hpP.data() + q * w,
                   D.data() + r * wp,      haU.data() + q * w, hpU.data() + q * w,  S.data() + r * w};
  }
  StepBufs<T> vbufs(bool on_low) {
    const int64_t is = hs ? g.w : 0;
    return StepBufs<T>{vaP.data(), vpP.data(), vaU.data(), vpU.data(), is,
                       on_low ? LH.data() : HH.data(), on_low ? LL.data() : HL.data()};
  }
  const T* vsrc(bool on_low) const { return on_low ? S.data() : D.data() + g.p; }
  int64_t vld(bool on_low) const { return on_low ? g.w : wp; }

  // forward of one plane: horizontal step, then both vertical steps
  void forward(const T* x, const T* params, int64_t c) {
    const Geometry& G = g;
    const Lifter<T> Ph = lifter_of(params, G, G.th(), 0, c), Uh = lifter_of(params, G, G.th(), 1, c);
    for (int64_t r = 0; r < G.H; ++r)
      hrow_forward(x + r * G.W, G.W, idx_w.data(), G.p, G.K, Ph, Uh, hrow(r), acc.cons(0), acc.cons(1));
    vertical_forward(params, c, true);
    vertical_forward(params, c, false);
  }
  void vertical_forward(const T* params, int64_t c, bool on_low) {
    const int64_t t = on_low ? g.tvl() : g.tvh();
    const Lifter<T> P = lifter_of(params, g, t, 0, c), U = lifter_of(params, g, t, 1, c);
    rows_forward(vsrc(on_low), vld(on_low), g.H, g.w, idx_h.data(), g.p, g.K, P, U, zero.data(), ptr.data(),
                 vbufs(on_low), acc.cons(2), acc.cons(3));
  }

  // backward of one plane (recomputes the forward); go: pooled gradient (h x w) or null; det[b]:
  // detail gradients (LH, HL, HH) or null; writes the input gradient of the plane into gx.
  void backward(const T* x, const T* params, int64_t c, const T* go, const std::array<const T*, 3>& det,
                const Bands& bands, const std::array<T, 4>& coef, T* gx) {
    const Geometry& G = g;
    const int64_t hw = G.h * G.w;
    const Lifter<T> Ph = lifter_of(params, G, G.th(), 0, c), Uh = lifter_of(params, G, G.th(), 1, c);
    for (int64_t r = 0; r < G.H; ++r)
      hrow_forward(x + r * G.W, G.W, idx_w.data(), G.p, G.K, Ph, Uh, hrow(r), acc.cons(0), acc.cons(1));
    for (int side = 0; side < 2; ++side) {
      const bool on_low = side == 0;
      // gradients of this step's s (LL or HL) and d (LH or HH)
      const int bs = on_low ? 0 : 2, bd = on_low ? 1 : 3;
      band_grad(go, bands, 1 << bs, T(bands.scale), bs == 0 ? nullptr : det[bs - 1], gB0.data(), hw);
      band_grad(go, bands, 1 << bd, T(bands.scale), det[bd - 1], gB1.data(), hw);
      vertical_forward(params, c, on_low);
      const int64_t t = on_low ? G.tvl() : G.tvh();
      const Lifter<T> P = lifter_of(params, G, t, 0, c), U = lifter_of(params, G, t, 1, c);
      rows_backward(vsrc(on_low), vld(on_low), G.H, G.w, idx_h.data(), G.p, G.K, P, U, zero.data(), dump.data(),
                    ptr.data(), gptr.data(), vbufs(on_low), gB0.data(), gB1.data(), coef[2], coef[3],
                    on_low ? gS.data() : gD.data(), vgd.data(), ga.data(), gtail.data(), acc.lifter(t, 0),
                    acc.lifter(t, 1));
    }
    for (int64_t r = 0; r < G.H; ++r)
      hrow_backward(hrow(r), G.W, idx_w.data(), G.p, G.K, Ph, Uh, gS.data() + r * G.w, gD.data() + r * G.w, coef[0],
                    coef[1], gEp.data(), gDp.data(), gO.data(), ga.data(), acc.lifter(G.th(), 0),
                    acc.lifter(G.th(), 1), gx + r * G.W);
  }

  static void band_grad(const T* go, const Bands& bands, int band, T scale, const T* det, T* out, int64_t n) {
    const bool chosen = go != nullptr && bands.has(band);
    if (chosen && det) {
      for (int64_t q = 0; q < n; ++q) out[q] = scale * go[q] + det[q];
    } else if (chosen) {
      for (int64_t q = 0; q < n; ++q) out[q] = scale * go[q];
    } else if (det) {
      for (int64_t q = 0; q < n; ++q) out[q] = det[q];
    } else {
      std::fill(out, out + n, T(0));
    }
  }
};

// ---------------------------------------------------------------------- images-innermost layout
template <typename T>
struct GroupWork {
  Geometry g;
  int64_t wp, keep;  // keep: 1 when intermediates are kept for backward
  int64_t G = 0;     // images in the current item
  std::vector<int64_t> idx_w, idx_h;
  std::vector<T> X, haP, hpP, haU, hpU, hD, hS, vaP, vpP, vaU, vpU, LL, LH, HL, HH, out;
  std::vector<T> gS, gD, gB0, gB1, vgd, ga, gtail, gX, zero, dump, gpool, gdet;
  std::vector<const T*> ptr;
  std::vector<T*> gptr;
  Accumulators<T> acc;

  GroupWork(const Geometry& geo, bool backward) : g(geo) {
    const int64_t H = g.H, W = g.W, h = g.h, w = g.w, p = g.p, GM = g.grp;
    wp = w + 2 * p;
    keep = backward ? 1 : 0;
    pad_table(idx_w, w, p, g.mode);
    pad_table(idx_h, h, p, g.mode);
    X.resize(static_cast<size_t>(H * W * GM));
    const size_t hrows = static_cast<size_t>((backward ? H : 1) * w * GM);
    for (auto* v : {&haP, &hpP, &haU, &hpU}) v->resize(hrows);
    hD.resize(static_cast<size_t>(H * w * GM));
    hS.resize(static_cast<size_t>(H * w * GM));
    const size_t vrows = static_cast<size_t>((backward ? h : 1) * w * GM);
    for (auto* v : {&vaP, &vpP, &vaU, &vpU}) v->resize(vrows);
    for (auto* v : {&LL, &LH, &HL, &HH}) v->resize(static_cast<size_t>(h * w * GM));
    zero.assign(static_cast<size_t>(w * GM), T(0));
    dump.resize(static_cast<size_t>(w * GM));
    const size_t np = static_cast<size_t>(std::max(h, w) + 2 * p);
    ptr.resize(np);
    gptr.resize(np);
    if (backward) {
      gS.resize(static_cast<size_t>(H * w * GM));
      gD.resize(static_cast<size_t>(H * w * GM));
      for (auto* v : {&gB0, &gB1}) v->resize(static_cast<size_t>(2 * h * w * GM));  // [s | d] band gradients
      vgd.resize(static_cast<size_t>(std::max(h, w) * w * GM));
      for (auto* v : {&ga, &gtail}) v->resize(static_cast<size_t>(w * GM));
      gX.resize(static_cast<size_t>(H * W * GM));
    }
    acc.init(g.nparam(), w * GM, g.K);
  }

  // gather G planes (plane stride ps) into X[q][g]
  void gather(const T* src, int64_t ps, int64_t count, T* dst) const {
    for (int64_t i = 0; i < G; ++i) {
      const T* __restrict s = src + i * ps;
      T* __restrict d = dst + i;
      for (int64_t q = 0; q < count; ++q) d[q * G] = s[q];
    }
  }

  StepBufs<T> hbufs(int64_t r) {
    const int64_t wG = g.w * G, q = r * keep * wG;
    return StepBufs<T>{haP.data() + q, hpP.data() + q, haU.data() + q, hpU.data() + q, keep ? G : 0,
                       hD.data() + r * wG, hS.data() + r * wG};
  }
  StepBufs<T> vbufs(bool on_low) {
    const int64_t wG = g.w * G;
    return StepBufs<T>{vaP.data(), vpP.data(), vaU.data(), vpU.data(), keep ? wG : 0,
                       on_low ? LH.data() : HH.data(), on_low ? LL.data() : HL.data()};
  }

  void horizontal_forward(const T* params, int64_t c) {
    const Lifter<T> P = lifter_of(params, g, g.th(), 0, c), U = lifter_of(params, g, g.th(), 1, c);
    for (int64_t r = 0; r < g.H; ++r)
      rows_forward(X.data() + r * g.W * G, G, g.W, G, idx_w.data(), g.p, g.K, P, U, zero.data(), ptr.data(),
                   hbufs(r), acc.cons(0), acc.cons(1));
  }
  void vertical_forward(const T* params, int64_t c, bool on_low) {
    const int64_t t = on_low ? g.tvl() : g.tvh();
    const Lifter<T> P = lifter_of(params, g, t, 0, c), U = lifter_of(params, g, t, 1, c);
    rows_forward(on_low ? hS.data() : hD.data(), g.w * G, g.H, g.w * G, idx_h.data(), g.p, g.K, P, U, zero.data(),
                 ptr.data(), vbufs(on_low), acc.cons(2), acc.cons(3));
  }

  void backward(const T* params, int64_t c, const std::array<T, 4>& coef) {
    const int64_t wG = g.w * G;
    horizontal_forward(params, c);
    for (int side = 0; side < 2; ++side) {
      const bool on_low = side == 0;
      vertical_forward(params, c, on_low);
      const int64_t t = on_low ? g.tvl() : g.tvh();
      const Lifter<T> P = lifter_of(params, g, t, 0, c), U = lifter_of(params, g, t, 1, c);
      T* gs_in = on_low ? gB0.data() : gB1.data();
      T* gd_in = gs_in + g.h * wG;  // gB0 = [LL | LH], gB1 = [HL | HH] (h * wG each)
      rows_backward(on_low ? hS.data() : hD.data(), wG, g.H, wG, idx_h.data(), g.p, g.K, P, U, zero.data(),
                    dump.data(), ptr.data(), gptr.data(), vbufs(on_low), gs_in, gd_in, coef[2], coef[3],
                    on_low ? gS.data() : gD.data(), vgd.data(), ga.data(), gtail.data(), acc.lifter(t, 0),
                    acc.lifter(t, 1));
    }
    const Lifter<T> P = lifter_of(params, g, g.th(), 0, c), U = lifter_of(params, g, g.th(), 1, c);
    for (int64_t r = 0; r < g.H; ++r)
      rows_backward(X.data() + r * g.W * G, G, g.W, G, idx_w.data(), g.p, g.K, P, U, zero.data(), dump.data(),
                    ptr.data(), gptr.data(), hbufs(r), gS.data() + r * wG, gD.data() + r * wG, coef[0], coef[1],
                    gX.data() + r * g.W * G, vgd.data(), ga.data(), gtail.data(), acc.lifter(g.th(), 0),
                    acc.lifter(g.th(), 1));
  }
};

// ---------------------------------------------------------------------------------- entry points
Geometry geometry_of(const at::Tensor& x, const at::Tensor& params, int64_t padding) {
  TORCH_CHECK(x.dim() == 4, "liftpool native: x must be (N, C, H, W), got shape ", x.sizes());
  TORCH_CHECK(params.dim() == 4 && params.size(1) == 2 && params.size(3) >= 4,
              "liftpool native: params must be (T, 2, C, K + 3), got shape ", params.sizes());
  TORCH_CHECK(params.size(0) == 1 || params.size(0) == 3, "liftpool native: params must hold 1 or 3 (P, U) pairs, got ",
              params.size(0));
  TORCH_CHECK(params.size(2) == x.size(1), "liftpool native: params has ", params.size(2), " channels, x has ",
              x.size(1));
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "liftpool native: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(params.scalar_type() == x.scalar_type(), "liftpool native: params dtype ", params.scalar_type(),
              " differs from x dtype ", x.scalar_type());
  TORCH_CHECK(!x.is_cuda() && x.device().is_cpu() && params.device().is_cpu(), "liftpool native: CPU tensors only");
  TORCH_CHECK(padding >= 0 && padding <= 3, "liftpool native: padding must be 0..3, got ", padding);
  Geometry g;
  g.N = x.size(0);
  g.C = x.size(1);
  g.H = x.size(2);
  g.W = x.size(3);
  TORCH_CHECK(g.H >= 1 && g.W >= 1, "liftpool native: empty spatial axis, shape ", x.sizes());
  g.h = (g.H + 1) / 2;
  g.w = (g.W + 1) / 2;
  g.K = params.size(3) - 3;
  TORCH_CHECK(g.K % 2 == 1, "liftpool native: kernel_size must be odd, got ", g.K);
  g.p = g.K / 2;
  g.T = params.size(0);
  g.mode = static_cast<int>(padding);
  return g;
}

Bands bands_of(int64_t mask, double scale) {
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

int64_t group_size(int64_t N, int64_t w) {
  int64_t want = (kGroupLanes + w - 1) / w;
  want = std::max<int64_t>(kGroup, (want + kGroup - 1) / kGroup * kGroup);
  const int64_t batch = (N + kGroup - 1) / kGroup * kGroup;
  return std::min({want, batch, int64_t(64)});
}

int64_t groups_of(const Geometry& g) { return (g.N + g.grp - 1) / g.grp; }

std::vector<at::Tensor> down2d_forward(const at::Tensor& x_in, const at::Tensor& params_in, int64_t padding,
                                       int64_t band_mask, double scale, bool constraints, bool details,
                                       int64_t layout) {
  Geometry g = geometry_of(x_in, params_in, padding);
  g.grp = group_size(g.N, g.w);
  const Bands bands = bands_of(band_mask, scale);
  TORCH_CHECK(layout == 1 || layout == 2, "liftpool native: layout must be 1 (plane) or 2 (images innermost)");
  const at::Tensor x = x_in.contiguous(), params = params_in.contiguous();
  at::Tensor out = at::empty({g.N, g.C, g.h, g.w}, x.options());
  at::Tensor det = details ? at::empty({3, g.N, g.C, g.h, g.w}, x.options()) : at::empty({0}, x.options());
  const int64_t items = layout == 1 ? g.N * g.C : g.C * groups_of(g);
  at::Tensor part = at::zeros({items, 4}, x.options().dtype(at::kDouble));
  const int64_t hw = g.h * g.w, HW = g.H * g.W, plane_out = g.N * g.C * hw;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "liftpool_down2d_forward", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    const T* pp = params.data_ptr<T>();
    T* op = out.data_ptr<T>();
    T* dp = details ? det.data_ptr<T>() : nullptr;
    double* sp = part.data_ptr<double>();
    if (layout == 1) {
      at::parallel_for(0, items, 1, [&](int64_t b0, int64_t b1) {
        PlaneWork<T> ws(g, false);
        for (int64_t it = b0; it < b1; ++it) {
          const int64_t c = it % g.C;
          ws.acc.zero();
          ws.forward(xp + it * HW, pp, c);
          const std::array<const T*, 4> band = {ws.LL.data(), ws.LH.data(), ws.HL.data(), ws.HH.data()};
          write_pooled(band, hw, 1, bands, op + it * hw);
          if (dp)
            for (int b = 1; b < 4; ++b) std::copy(band[b], band[b] + hw, dp + (b - 1) * plane_out + it * hw);
          if (constraints)
            for (int k = 0; k < 4; ++k) sp[it * 4 + k] = ws.acc.sum(ws.acc.nslot - 4 + k);
        }
      });
    } else {
      const int64_t ng = groups_of(g);
      at::parallel_for(0, items, 1, [&](int64_t b0, int64_t b1) {
        GroupWork<T> ws(g, false);
        for (int64_t it = b0; it < b1; ++it) {
          const int64_t c = it / ng, n0 = (it % ng) * g.grp;
          ws.G = std::min(g.grp, g.N - n0);
          ws.acc.zero();
          ws.gather(xp + (n0 * g.C + c) * HW, g.C * HW, HW, ws.X.data());
          ws.horizontal_forward(pp, c);
          ws.vertical_forward(pp, c, true);
          ws.vertical_forward(pp, c, false);
          const std::array<const T*, 4> band = {ws.LL.data(), ws.LH.data(), ws.HL.data(), ws.HH.data()};
          for (int64_t i = 0; i < ws.G; ++i) {
            const int64_t plane = (n0 + i) * g.C + c;
            const std::array<const T*, 4> lane = {band[0] + i, band[1] + i, band[2] + i, band[3] + i};
            write_pooled(lane, hw, ws.G, bands, op + plane * hw);
            if (dp)
              for (int b = 1; b < 4; ++b) {
                T* __restrict d = dp + (b - 1) * plane_out + plane * hw;
                const T* __restrict s = lane[b];
                for (int64_t q = 0; q < hw; ++q) d[q] = s[q * ws.G];
              }
          }
          if (constraints)
            for (int k = 0; k < 4; ++k) sp[it * 4 + k] = ws.acc.sum(ws.acc.nslot - 4 + k);
        }
      });
    }
  });
  at::Tensor cons = at::zeros({2}, x.options());
  if (constraints) {
    // fixed-order reduction over items in double
    const double* sp = part.data_ptr<double>();
    double s[4] = {0, 0, 0, 0};
    for (int64_t it = 0; it < items; ++it)
      for (int k = 0; k < 4; ++k) s[k] += sp[it * 4 + k];
    const double nh = static_cast<double>(g.N * g.C * g.H * g.w), nv = static_cast<double>(g.N * g.C * hw);
    const at::Tensor c64 = at::tensor({s[0] / nh + s[2] / nv, s[1] / nh + s[3] / nv}, part.options());
    cons = c64.to(x.scalar_type());
  }
  return {out, det, cons};
}

std::vector<at::Tensor> down2d_backward(const at::Tensor& x_in, const at::Tensor& params_in,
                                        const std::optional<at::Tensor>& grad_out,
                                        const std::optional<at::Tensor>& grad_details, const at::Tensor& grad_cons,
                                        int64_t padding, int64_t band_mask, double scale, int64_t layout) {
  Geometry g = geometry_of(x_in, params_in, padding);
  g.grp = group_size(g.N, g.w);
  const Bands bands = bands_of(band_mask, scale);
  TORCH_CHECK(layout == 1 || layout == 2, "liftpool native: layout must be 1 (plane) or 2 (images innermost)");
  const at::Tensor x = x_in.contiguous(), params = params_in.contiguous();
  const int64_t hw = g.h * g.w, HW = g.H * g.W, plane_out = g.N * g.C * hw;
  at::Tensor go, gdet;
  if (grad_out.has_value() && grad_out->defined()) {
    TORCH_CHECK(grad_out->sizes() == at::IntArrayRef({g.N, g.C, g.h, g.w}), "liftpool native: grad_out shape ",
                grad_out->sizes());
    go = grad_out->to(x.scalar_type()).contiguous();
  }
  if (grad_details.has_value() && grad_details->defined() && grad_details->numel() > 0) {
    TORCH_CHECK(grad_details->sizes() == at::IntArrayRef({3, g.N, g.C, g.h, g.w}),
                "liftpool native: grad_details shape ", grad_details->sizes());
    gdet = grad_details->to(x.scalar_type()).contiguous();
  }
  TORCH_CHECK(grad_cons.numel() == 2, "liftpool native: grad_cons must have 2 elements");
  const at::Tensor gc = grad_cons.to(at::kDouble).contiguous();
  const double gcu = gc.data_ptr<double>()[0], gcp = gc.data_ptr<double>()[1];
  const double nh = static_cast<double>(g.N * g.C * g.H * g.w), nv = static_cast<double>(g.N * g.C * hw);
  at::Tensor gx = at::empty_like(x);
  const int64_t ng = groups_of(g);
  const int64_t items = layout == 1 ? g.N * g.C : g.C * ng;
  const int64_t np = g.nparam();
  at::Tensor part = at::empty({items, np}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "liftpool_down2d_backward", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    const T* pp = params.data_ptr<T>();
    const T* gop = go.defined() ? go.data_ptr<T>() : nullptr;
    const T* gdp = gdet.defined() ? gdet.data_ptr<T>() : nullptr;
    T* gxp = gx.data_ptr<T>();
    double* sp = part.data_ptr<double>();
    const std::array<T, 4> coef = {static_cast<T>(2 * gcu / nh), static_cast<T>(2 * gcp / nh),
                                   static_cast<T>(2 * gcu / nv), static_cast<T>(2 * gcp / nv)};
    if (layout == 1) {
      at::parallel_for(0, items, 1, [&](int64_t b0, int64_t b1) {
        PlaneWork<T> ws(g, true);
        for (int64_t it = b0; it < b1; ++it) {
          const int64_t c = it % g.C;
          ws.acc.zero();
          std::array<const T*, 3> det = {nullptr, nullptr, nullptr};
          if (gdp)
            for (int b = 0; b < 3; ++b) det[b] = gdp + b * plane_out + it * hw;
          ws.backward(xp + it * HW, pp, c, gop ? gop + it * hw : nullptr, det, bands, coef, gxp + it * HW);
          for (int64_t k = 0; k < np; ++k) sp[it * np + k] = ws.acc.sum(k);
        }
      });
    } else {
      at::parallel_for(0, items, 1, [&](int64_t b0, int64_t b1) {
        GroupWork<T> ws(g, true);
        for (int64_t it = b0; it < b1; ++it) {
          const int64_t c = it / ng, n0 = (it % ng) * g.grp;
          const int64_t G = std::min(g.grp, g.N - n0), wG = g.w * G, first = n0 * g.C + c;
          ws.G = G;
          ws.acc.zero();
          ws.gather(xp + first * HW, g.C * HW, HW, ws.X.data());
          // band gradients, interleaved: gB0 = [LL | LH], gB1 = [HL | HH]
          T* bandg[4] = {ws.gB0.data(), ws.gB0.data() + g.h * wG, ws.gB1.data(), ws.gB1.data() + g.h * wG};
          for (int b = 0; b < 4; ++b) {
            const bool chosen = gop && bands.has(1 << b);
            const T* det = (b > 0 && gdp) ? gdp + (b - 1) * plane_out : nullptr;
            if (!chosen && !det) {
              std::fill(bandg[b], bandg[b] + hw * G, T(0));
              continue;
            }
            if (chosen) {
              ws.gather(gop + first * hw, g.C * hw, hw, bandg[b]);
              const T s = static_cast<T>(bands.scale);
              for (int64_t q = 0; q < hw * G; ++q) bandg[b][q] *= s;
            } else {
              std::fill(bandg[b], bandg[b] + hw * G, T(0));
            }
            if (det)
              for (int64_t i = 0; i < G; ++i) {
                const T* __restrict s = det + (first + i * g.C) * hw;
                T* __restrict d = bandg[b] + i;
                for (int64_t q = 0; q < hw; ++q) d[q * G] += s[q];
              }
          }
          ws.backward(pp, c, coef);
          for (int64_t i = 0; i < G; ++i) {
            T* __restrict d = gxp + (first + i * g.C) * HW;
            const T* __restrict s = ws.gX.data() + i;
            for (int64_t q = 0; q < HW; ++q) d[q] = s[q * G];
          }
          for (int64_t k = 0; k < np; ++k) sp[it * np + k] = ws.acc.sum(k);
        }
      });
    }
  });
  // parameter gradients: (T, 2, C, K + 3); sum the items of each channel in a fixed order in double
  at::Tensor gp64 = at::zeros({g.T, 2, g.C, g.K + 3}, part.options());
  {
    const double* sp = part.data_ptr<double>();
    double* gq = gp64.data_ptr<double>();
    const int64_t K3 = g.K + 3;
    for (int64_t it = 0; it < items; ++it) {
      const int64_t c = layout == 1 ? it % g.C : it / ng;
      for (int64_t t2 = 0; t2 < g.T * 2; ++t2)
        for (int64_t k = 0; k < K3; ++k) gq[(t2 * g.C + c) * K3 + k] += sp[it * np + t2 * K3 + k];
    }
  }
  return {gx, gp64.to(x.scalar_type())};
}

// ---------------------------------------------------------------- parameter lists (no packing in Python)
// The ops take the lifters' own tensors, 4 per lifter (weight (C, 1, K), bias (C), pw_weight (C, 1), pw_bias (C)),
// P then U per transform: 8 (shared) or 24 tensors.  Packing them here, without autograd, replaces a chain of
// cat/stack calls (and their backward) per layer call.
at::Tensor pack_params(const std::vector<at::Tensor>& ps, const at::Tensor& x) {
  TORCH_CHECK(ps.size() == 8 || ps.size() == 24,
              "liftpool native: params must be 8 or 24 tensors (weight, bias, pw_weight, pw_bias per P/U lifter), got ",
              ps.size());
  TORCH_CHECK(x.dim() == 4, "liftpool native: x must be (N, C, H, W), got shape ", x.sizes());
  const int64_t T = static_cast<int64_t>(ps.size()) / 8;
  TORCH_CHECK(ps[0].dim() == 3 && ps[0].size(1) == 1, "liftpool native: lifter weight must be (C, 1, K), got shape ",
              ps[0].sizes());
  const int64_t C = ps[0].size(0), K = ps[0].size(2), K3 = K + 3;
  TORCH_CHECK(C == x.size(1), "liftpool native: params have ", C, " channels, x has ", x.size(1));
  for (const at::Tensor& p : ps) {
    TORCH_CHECK(p.scalar_type() == x.scalar_type(), "liftpool native: params dtype ", p.scalar_type(),
                " differs from x dtype ", x.scalar_type());
    TORCH_CHECK(p.device().is_cpu(), "liftpool native: CPU tensors only");
  }
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

std::vector<at::Tensor> down2d_forward_list(const at::Tensor& x, const std::vector<at::Tensor>& params, int64_t padding,
                                            int64_t band_mask, double scale, bool constraints, bool details,
                                            int64_t layout) {
  return down2d_forward(x, pack_params(params, x), padding, band_mask, scale, constraints, details, layout);
}

// Returns [grad_x, grad of every tensor of params (their shapes, x's dtype)].
std::vector<at::Tensor> down2d_backward_list(const at::Tensor& x, const std::vector<at::Tensor>& params,
                                             const std::optional<at::Tensor>& grad_out,
                                             const std::optional<at::Tensor>& grad_details,
                                             const at::Tensor& grad_cons, int64_t padding, int64_t band_mask,
                                             double scale, int64_t layout) {
  const at::Tensor packed = pack_params(params, x);
  std::vector<at::Tensor> r =
      down2d_backward(x, packed, grad_out, grad_details, grad_cons, padding, band_mask, scale, layout);
  const at::Tensor gp = r[1].contiguous();
  const int64_t T2 = packed.size(0) * 2, C = packed.size(2), K3 = packed.size(3), K = K3 - 3;
  std::vector<at::Tensor> res;
  res.reserve(1 + params.size());
  res.push_back(r[0]);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "liftpool_unpack_grads", [&] {
    using S = scalar_t;
    const S* src = gp.data_ptr<S>();
    for (int64_t l = 0; l < T2; ++l) {
      at::Tensor gw = at::empty(params[4 * l].sizes(), x.options()), gb = at::empty(params[4 * l + 1].sizes(), x.options()),
                 gpw = at::empty(params[4 * l + 2].sizes(), x.options()),
                 gpb = at::empty(params[4 * l + 3].sizes(), x.options());
      S *wp = gw.data_ptr<S>(), *bp = gb.data_ptr<S>(), *pwp = gpw.data_ptr<S>(), *pbp = gpb.data_ptr<S>();
      for (int64_t c = 0; c < C; ++c) {
        const S* row = src + (l * C + c) * K3;
        for (int64_t k = 0; k < K; ++k) wp[c * K + k] = row[k];
        bp[c] = row[K];
        pwp[c] = row[K + 1];
        pbp[c] = row[K + 2];
      }
      res.push_back(gw);
      res.push_back(gb);
      res.push_back(gpw);
      res.push_back(gpb);
    }
  });
  return res;
}

// fp32 tanh approximation on a tensor (for the accuracy test)
at::Tensor tanh_float(const at::Tensor& v) {
  TORCH_CHECK(v.scalar_type() == at::kFloat, "tanh_float: float32 tensor expected");
  at::Tensor c = v.contiguous();
  at::Tensor out = at::empty_like(c);
  const float* a = c.data_ptr<float>();
  float* o = out.data_ptr<float>();
  const int64_t n = c.numel();
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = fast_tanh(a[i]);
  return out;
}

}  // namespace
}  // namespace liftpool

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  m.def("down2d_forward", &liftpool::down2d_forward, "fused LiftDownPool2d forward", py::arg("x"), py::arg("params"),
        py::arg("padding"), py::arg("bands"), py::arg("scale"), py::arg("constraints"), py::arg("details"),
        py::arg("layout"), py::call_guard<py::gil_scoped_release>());
  m.def("down2d_backward", &liftpool::down2d_backward, "fused LiftDownPool2d backward (recomputes per item)",
        py::arg("x"), py::arg("params"), py::arg("grad_out"), py::arg("grad_details"), py::arg("grad_cons"),
        py::arg("padding"), py::arg("bands"), py::arg("scale"), py::arg("layout"),
        py::call_guard<py::gil_scoped_release>());
  m.def("down2d_forward_list", &liftpool::down2d_forward_list, "fused forward, parameters as the lifters' tensors",
        py::arg("x"), py::arg("params"), py::arg("padding"), py::arg("bands"), py::arg("scale"),
        py::arg("constraints"), py::arg("details"), py::arg("layout"), py::call_guard<py::gil_scoped_release>());
  m.def("down2d_backward_list", &liftpool::down2d_backward_list,
        "fused backward, parameters as the lifters' tensors: [grad_x, grad per parameter tensor]", py::arg("x"),
        py::arg("params"), py::arg("grad_out"), py::arg("grad_details"), py::arg("grad_cons"), py::arg("padding"),
        py::arg("bands"), py::arg("scale"), py::arg("layout"), py::call_guard<py::gil_scoped_release>());
  m.def("tanh_float", &liftpool::tanh_float, "the kernel's float32 tanh approximation", py::arg("v"));
}
