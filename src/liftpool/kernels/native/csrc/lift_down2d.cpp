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
#include "lift_common.h"
#include "lift_ops.h"

namespace liftpool {
namespace {


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
  bool cons = true;  // backward: the constraint sums have an incoming gradient

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
                    ptr.data(), gptr.data(), vbufs(on_low), gB0.data(), gB1.data(), coef[2], coef[3], cons,
                    on_low ? gS.data() : gD.data(), vgd.data(), ga.data(), gtail.data(), acc.lifter(t, 0),
                    acc.lifter(t, 1));
    }
    for (int64_t r = 0; r < G.H; ++r)
      hrow_backward(hrow(r), G.W, idx_w.data(), G.p, G.K, Ph, Uh, gS.data() + r * G.w, gD.data() + r * G.w, coef[0],
                    coef[1], cons, zero.data(), gEp.data(), gDp.data(), gO.data(), ga.data(), acc.lifter(G.th(), 0),
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
  bool cons = true;  // backward: the constraint sums have an incoming gradient

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
                    dump.data(), ptr.data(), gptr.data(), vbufs(on_low), gs_in, gd_in, coef[2], coef[3], cons,
                    on_low ? gS.data() : gD.data(), vgd.data(), ga.data(), gtail.data(), acc.lifter(t, 0),
                    acc.lifter(t, 1));
    }
    const Lifter<T> P = lifter_of(params, g, g.th(), 0, c), U = lifter_of(params, g, g.th(), 1, c);
    for (int64_t r = 0; r < g.H; ++r)
      rows_backward(X.data() + r * g.W * G, G, g.W, G, idx_w.data(), g.p, g.K, P, U, zero.data(), dump.data(),
                    ptr.data(), gptr.data(), hbufs(r), gS.data() + r * wG, gD.data() + r * wG, coef[0], coef[1], cons,
                    gX.data() + r * g.W * G, vgd.data(), ga.data(), gtail.data(), acc.lifter(g.th(), 0),
                    acc.lifter(g.th(), 1));
  }
};

}  // namespace

std::vector<at::Tensor> down2d_forward(const at::Tensor& x_in, const at::Tensor& params_in, int64_t padding,
                                       int64_t band_mask, double scale, bool constraints, bool details,
                                       int64_t layout) {
  Geometry g = geometry_of(x_in, params_in, padding);
  g.grp = group_size(g.N, g.w);
  const Bands bands = bands_of(band_mask, scale);
  layout = resolve_layout(layout, g.N, g.W);
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
    const double nh = mean_count(g.N * g.C * g.H * g.w), nv = mean_count(g.N * g.C * hw);
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
  layout = resolve_layout(layout, g.N, g.W);
  const at::Tensor x = x_in.contiguous(), params = params_in.contiguous();
  const int64_t hw = g.h * g.w, HW = g.H * g.W, plane_out = g.N * g.C * hw;
  const at::Tensor go = incoming_grad(grad_out, {g.N, g.C, g.h, g.w}, x, "grad_out", false);
  const at::Tensor gdet = incoming_grad(grad_details, {3, g.N, g.C, g.h, g.w}, x, "grad_details", true);
  const ConsGrad gc = cons_grad(grad_cons);
  const double gcu = gc.u, gcp = gc.p;
  const bool cons = gc.present;
  const double nh = mean_count(g.N * g.C * g.H * g.w), nv = mean_count(g.N * g.C * hw);
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
        ws.cons = cons;
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
        ws.cons = cons;
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
  std::vector<at::Tensor> res = {r[0]};
  res.reserve(1 + params.size());
  unpack_param_grads(res, r[1], params, x);
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

}  // namespace liftpool
