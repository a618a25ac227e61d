// Fused CPU LiftUpPool2d with learned P/U: forward and backward (liftpool.kernels.native).
//
// The inverse of lift_down2d.cpp, item by item in the same two layouts:
//   * plane layout (layout = 1): one (n, c) plane per item; the inverse vertical steps on (LL, LH) and
//     (HL, HH) over rows of w lanes (rows_inverse), then the inverse horizontal step row by row along the
//     contiguous axis (hrow_inverse), cropped to (H, W);
//   * images-innermost layout (layout = 2, small maps): up to 64 images of one channel per item,
//     interleaved innermost, every step over rows of w * G (vertical) or G (horizontal) lanes.
// Backward saves nothing but the bands and the parameters: each item recomputes its forward (keeping the
// intermediates of that item only), then runs the horizontal backward and both vertical backwards.
// Parameter gradients are reduced in a fixed order in double (same bits for any thread count).
#include "lift_common.h"
#include "lift_ops.h"

namespace liftpool {
namespace {

// Geometry of an up call: bands (N, C, h, w), output (N, C, H, W).
Geometry up_geometry(const std::vector<at::Tensor>& bands, const at::Tensor& params, int64_t H, int64_t W,
                     int64_t padding) {
  TORCH_CHECK(bands.size() == 4, "liftpool native: up2d needs 4 bands (LL, LH, HL, HH), got ", bands.size());
  const at::Tensor& low = bands[0];
  TORCH_CHECK(low.dim() == 4, "liftpool native: bands must be (N, C, h, w), got shape ", low.sizes());
  for (const at::Tensor& b : bands) {
    check_tensor(b, "a band");
    TORCH_CHECK(b.sizes() == low.sizes(), "liftpool native: band shapes differ: ", b.sizes(), " vs ", low.sizes());
    TORCH_CHECK(b.scalar_type() == low.scalar_type(), "liftpool native: band dtypes differ");
  }
  TORCH_CHECK(H >= 1 && W >= 1 && (H + 1) / 2 == low.size(2) && (W + 1) / 2 == low.size(3),
              "liftpool native: output size (", H, ", ", W, ") does not match bands of spatial size (", low.size(2),
              ", ", low.size(3), ")");
  return geometry_from({low.size(0), low.size(1), H, W}, low.scalar_type(), low.device().is_cpu(), params, padding);
}

template <typename T>
struct UpPlaneWork {
  Geometry g;
  int64_t wp, keep;
  std::vector<int64_t> idx_w, idx_h;
  std::vector<T> vb[2][4];   // per side: aU, vU, aP, vP (h x w when kept)
  std::vector<T> S, D;       // H x w: rows of the horizontal step's s and d
  std::vector<T> hb[7];      // per row: Dp, Ep (wp), aU, vU, aP, vP, O (w); H rows when kept
  std::vector<T> otail, zero, dump, xrow;
  std::vector<T> gS, gD, gEp, gDp, ga, ge;
  std::vector<const T*> ptr;
  std::vector<T*> gptr;
  Accumulators<T> acc;

  UpPlaneWork(const Geometry& geo, bool backward) : g(geo) {
    const int64_t H = g.H, h = g.h, w = g.w, p = g.p;
    wp = w + 2 * p;
    keep = backward ? 1 : 0;
    pad_table(idx_w, w, p, g.mode);
    pad_table(idx_h, h, p, g.mode);
    for (auto& side : vb)
      for (auto& v : side) v.resize(static_cast<size_t>((backward ? h : 1) * w));
    S.resize(static_cast<size_t>(H * w));
    D.resize(static_cast<size_t>(H * w));
    const int64_t rows = backward ? H : 1;
    for (int k = 0; k < 7; ++k) hb[k].resize(static_cast<size_t>(rows * (k < 2 ? wp : w)));
    otail.resize(static_cast<size_t>(w));
    zero.assign(static_cast<size_t>(w), T(0));
    dump.resize(static_cast<size_t>(w));
    ptr.resize(static_cast<size_t>(h + 2 * p));
    gptr.resize(static_cast<size_t>(h + 2 * p));
    if (backward) {
      gS.resize(static_cast<size_t>(H * w));
      gD.resize(static_cast<size_t>(H * w));
      gEp.resize(static_cast<size_t>(wp));
      gDp.resize(static_cast<size_t>(wp));
      ga.resize(static_cast<size_t>(w));
      ge.resize(static_cast<size_t>(h * w));
      xrow.resize(static_cast<size_t>(g.W));
    }
    acc.init(g.nparam(), w, g.K);
  }

  InvBufs<T> vbufs(int side) {
    return InvBufs<T>{vb[side][0].data(), vb[side][1].data(), vb[side][2].data(), vb[side][3].data(),
                      keep ? g.w : 0};
  }
  HInv<T> hbufs(int64_t r) {
    const int64_t q = r * keep, w = g.w;
    return HInv<T>{hb[0].data() + q * wp, hb[1].data() + q * wp, hb[2].data() + q * w, hb[3].data() + q * w,
                   hb[4].data() + q * w,  hb[5].data() + q * w,  hb[6].data() + q * w};
  }
  int64_t tv(int side) const { return side == 0 ? g.tvl() : g.tvh(); }

  // band[b]: the plane of band b (LL, LH, HL, HH); x: output plane (H x W) or null (backward recompute)
  void forward(const std::array<const T*, 4>& band, const T* params, int64_t c, T* x) {
    for (int side = 0; side < 2; ++side) {
      const Lifter<T> P = lifter_of(params, g, tv(side), 0, c), U = lifter_of(params, g, tv(side), 1, c);
      rows_inverse(band[2 * side], band[2 * side + 1], g.w, g.H, g.w, idx_h.data(), g.p, g.K, P, U, zero.data(),
                   ptr.data(), vbufs(side), side == 0 ? S.data() : D.data(), g.w, otail.data());
    }
    const Lifter<T> P = lifter_of(params, g, g.th(), 0, c), U = lifter_of(params, g, g.th(), 1, c);
    for (int64_t r = 0; r < g.H; ++r)
      hrow_inverse(S.data() + r * g.w, D.data() + r * g.w, g.W, idx_w.data(), g.p, g.K, P, U, hbufs(r),
                   x ? x + r * g.W : xrow.data());
  }

  void backward(const std::array<const T*, 4>& band, const T* params, int64_t c, const T* gx,
                const std::array<T*, 4>& gband) {
    forward(band, params, c, nullptr);
    const Lifter<T> Ph = lifter_of(params, g, g.th(), 0, c), Uh = lifter_of(params, g, g.th(), 1, c);
    for (int64_t r = 0; r < g.H; ++r)
      hrow_inverse_backward(hbufs(r), g.W, idx_w.data(), g.p, g.K, Ph, Uh, gx + r * g.W, gEp.data(), gDp.data(),
                            ga.data(), acc.lifter(g.th(), 0), acc.lifter(g.th(), 1), gS.data() + r * g.w,
                            gD.data() + r * g.w);
    for (int side = 0; side < 2; ++side) {
      const int64_t t = tv(side);
      const Lifter<T> P = lifter_of(params, g, t, 0, c), U = lifter_of(params, g, t, 1, c);
      rows_inverse_backward(band[2 * side + 1], g.w, g.H, g.w, idx_h.data(), g.p, g.K, P, U, zero.data(),
                            dump.data(), ptr.data(), gptr.data(), vbufs(side), side == 0 ? S.data() : D.data(), g.w,
                            side == 0 ? gS.data() : gD.data(), g.w, gband[2 * side], gband[2 * side + 1], g.w,
                            ge.data(), ga.data(), acc.lifter(t, 0), acc.lifter(t, 1));
    }
  }
};

template <typename T>
struct UpGroupWork {
  Geometry g;
  int64_t keep;
  int64_t G = 0;
  std::vector<int64_t> idx_w, idx_h;
  std::vector<T> B[4];       // gathered bands, h x w x G
  std::vector<T> vb[2][4];   // vertical inverse buffers per side
  std::vector<T> hS, hD;     // H x w x G
  std::vector<T> hb[4];      // horizontal inverse buffers, per image row: w x G (H rows when kept)
  std::vector<T> X, otail, zero, dump;
  std::vector<T> gX, ghS, ghD, ge, ga;
  std::vector<const T*> ptr;
  std::vector<T*> gptr;
  Accumulators<T> acc;

  UpGroupWork(const Geometry& geo, bool backward) : g(geo) {
    const int64_t H = g.H, W = g.W, h = g.h, w = g.w, p = g.p, GM = g.grp;
    keep = backward ? 1 : 0;
    pad_table(idx_w, w, p, g.mode);
    pad_table(idx_h, h, p, g.mode);
    for (auto& b : B) b.resize(static_cast<size_t>(h * w * GM));
    for (auto& side : vb)
      for (auto& v : side) v.resize(static_cast<size_t>((backward ? h : 1) * w * GM));
    hS.resize(static_cast<size_t>(H * w * GM));
    hD.resize(static_cast<size_t>(H * w * GM));
    for (auto& v : hb) v.resize(static_cast<size_t>((backward ? H : 1) * w * GM));
    X.resize(static_cast<size_t>(H * W * GM));
    otail.resize(static_cast<size_t>(w * GM));
    zero.assign(static_cast<size_t>(w * GM), T(0));
    dump.resize(static_cast<size_t>(w * GM));
    const size_t np = static_cast<size_t>(std::max(h, w) + 2 * p);
    ptr.resize(np);
    gptr.resize(np);
    if (backward) {
      gX.resize(static_cast<size_t>(H * W * GM));
      ghS.resize(static_cast<size_t>(H * w * GM));
      ghD.resize(static_cast<size_t>(H * w * GM));
      ge.resize(static_cast<size_t>(std::max(h, w) * w * GM));
      ga.resize(static_cast<size_t>(w * GM));
    }
    acc.init(g.nparam(), w * GM, g.K);
  }

  void gather(const T* src, int64_t ps, int64_t count, T* dst) const {
    for (int64_t i = 0; i < G; ++i) {
      const T* __restrict s = src + i * ps;
      T* __restrict d = dst + i;
      for (int64_t q = 0; q < count; ++q) d[q * G] = s[q];
    }
  }
  void scatter(const T* src, int64_t ps, int64_t count, T* dst) const {
    for (int64_t i = 0; i < G; ++i) {
      const T* __restrict s = src + i;
      T* __restrict d = dst + i * ps;
      for (int64_t q = 0; q < count; ++q) d[q] = s[q * G];
    }
  }
  InvBufs<T> vbufs(int side) {
    return InvBufs<T>{vb[side][0].data(), vb[side][1].data(), vb[side][2].data(), vb[side][3].data(),
                      keep ? g.w * G : 0};
  }
  InvBufs<T> hbufs(int64_t r) {
    const int64_t wG = g.w * G, q = r * keep * wG;
    return InvBufs<T>{hb[0].data() + q, hb[1].data() + q, hb[2].data() + q, hb[3].data() + q, keep ? G : 0};
  }
  int64_t tv(int side) const { return side == 0 ? g.tvl() : g.tvh(); }

  void forward(const T* params, int64_t c) {
    const int64_t wG = g.w * G;
    for (int side = 0; side < 2; ++side) {
      const Lifter<T> P = lifter_of(params, g, tv(side), 0, c), U = lifter_of(params, g, tv(side), 1, c);
      rows_inverse(B[2 * side].data(), B[2 * side + 1].data(), wG, g.H, wG, idx_h.data(), g.p, g.K, P, U,
                   zero.data(), ptr.data(), vbufs(side), side == 0 ? hS.data() : hD.data(), wG, otail.data());
    }
    const Lifter<T> P = lifter_of(params, g, g.th(), 0, c), U = lifter_of(params, g, g.th(), 1, c);
    for (int64_t r = 0; r < g.H; ++r)
      rows_inverse(hS.data() + r * wG, hD.data() + r * wG, G, g.W, G, idx_w.data(), g.p, g.K, P, U, zero.data(),
                   ptr.data(), hbufs(r), X.data() + r * g.W * G, G, otail.data());
  }

  // gX holds the output gradient (gathered); writes the band gradients into B-shaped buffers gB
  void backward(const T* params, int64_t c, const std::array<T*, 4>& gB) {
    const int64_t wG = g.w * G;
    forward(params, c);
    const Lifter<T> Ph = lifter_of(params, g, g.th(), 0, c), Uh = lifter_of(params, g, g.th(), 1, c);
    for (int64_t r = 0; r < g.H; ++r)
      rows_inverse_backward(hD.data() + r * wG, G, g.W, G, idx_w.data(), g.p, g.K, Ph, Uh, zero.data(), dump.data(),
                            ptr.data(), gptr.data(), hbufs(r), X.data() + r * g.W * G, G, gX.data() + r * g.W * G, G,
                            ghS.data() + r * wG, ghD.data() + r * wG, G, ge.data(), ga.data(), acc.lifter(g.th(), 0),
                            acc.lifter(g.th(), 1));
    for (int side = 0; side < 2; ++side) {
      const int64_t t = tv(side);
      const Lifter<T> P = lifter_of(params, g, t, 0, c), U = lifter_of(params, g, t, 1, c);
      rows_inverse_backward(B[2 * side + 1].data(), wG, g.H, wG, idx_h.data(), g.p, g.K, P, U, zero.data(),
                            dump.data(), ptr.data(), gptr.data(), vbufs(side), side == 0 ? hS.data() : hD.data(), wG,
                            side == 0 ? ghS.data() : ghD.data(), wG, gB[2 * side], gB[2 * side + 1], wG, ge.data(),
                            ga.data(), acc.lifter(t, 0), acc.lifter(t, 1));
    }
  }
};

std::vector<at::Tensor> contiguous_bands(const std::vector<at::Tensor>& bands) {
  std::vector<at::Tensor> out;
  out.reserve(bands.size());
  for (const at::Tensor& b : bands) out.push_back(b.contiguous());
  return out;
}

}  // namespace

at::Tensor up2d_forward_list(const std::vector<at::Tensor>& bands_in, const std::vector<at::Tensor>& params_in,
                             int64_t H, int64_t W, int64_t padding, int64_t layout) {
  TORCH_CHECK(bands_in.size() == 4, "liftpool native: up2d needs 4 bands (LL, LH, HL, HH), got ", bands_in.size());
  for (const at::Tensor& b : bands_in) check_tensor(b, "a band");
  const at::Tensor params = pack_params(params_in, bands_in[0]);
  Geometry g = up_geometry(bands_in, params, H, W, padding);
  g.grp = group_size(g.N, g.w);
  layout = resolve_layout(layout, g.N, g.W);
  const std::vector<at::Tensor> bands = contiguous_bands(bands_in);
  at::Tensor x = at::empty({g.N, g.C, g.H, g.W}, bands[0].options());
  const int64_t hw = g.h * g.w, HW = g.H * g.W;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "liftpool_up2d_forward", [&] {
    using T = scalar_t;
    const std::array<const T*, 4> bp = {bands[0].data_ptr<T>(), bands[1].data_ptr<T>(), bands[2].data_ptr<T>(),
                                        bands[3].data_ptr<T>()};
    const T* pp = params.data_ptr<T>();
    T* xp = x.data_ptr<T>();
    if (layout == 1) {
      at::parallel_for(0, g.N * g.C, 1, [&](int64_t b0, int64_t b1) {
        UpPlaneWork<T> ws(g, false);
        for (int64_t it = b0; it < b1; ++it) {
          const std::array<const T*, 4> band = {bp[0] + it * hw, bp[1] + it * hw, bp[2] + it * hw, bp[3] + it * hw};
          ws.forward(band, pp, it % g.C, xp + it * HW);
        }
      });
    } else {
      const int64_t ng = groups_of(g);
      at::parallel_for(0, g.C * ng, 1, [&](int64_t b0, int64_t b1) {
        UpGroupWork<T> ws(g, false);
        for (int64_t it = b0; it < b1; ++it) {
          const int64_t c = it / ng, n0 = (it % ng) * g.grp, first = n0 * g.C + c;
          ws.G = std::min(g.grp, g.N - n0);
          for (int b = 0; b < 4; ++b) ws.gather(bp[b] + first * hw, g.C * hw, hw, ws.B[b].data());
          ws.forward(pp, c);
          ws.scatter(ws.X.data(), g.C * HW, HW, xp + first * HW);
        }
      });
    }
  });
  return x;
}

std::vector<at::Tensor> up2d_backward_list(const std::vector<at::Tensor>& bands_in,
                                           const std::vector<at::Tensor>& params_in, const at::Tensor& grad_x_in,
                                           int64_t padding, int64_t layout) {
  TORCH_CHECK(bands_in.size() == 4, "liftpool native: up2d needs 4 bands (LL, LH, HL, HH), got ", bands_in.size());
  for (const at::Tensor& b : bands_in) check_tensor(b, "a band");
  check_tensor(grad_x_in, "grad_x");
  TORCH_CHECK(grad_x_in.dim() == 4, "liftpool native: grad_x must be (N, C, H, W), got shape ", grad_x_in.sizes());
  const at::Tensor packed = pack_params(params_in, bands_in[0]);
  Geometry g = up_geometry(bands_in, packed, grad_x_in.size(2), grad_x_in.size(3), padding);
  g.grp = group_size(g.N, g.w);
  layout = resolve_layout(layout, g.N, g.W);
  TORCH_CHECK(grad_x_in.size(0) == g.N && grad_x_in.size(1) == g.C, "liftpool native: grad_x shape ",
              grad_x_in.sizes(), " does not match the bands");
  const std::vector<at::Tensor> bands = contiguous_bands(bands_in);
  const at::Tensor gx = grad_x_in.to(bands[0].scalar_type()).contiguous();
  const int64_t hw = g.h * g.w, HW = g.H * g.W;
  std::vector<at::Tensor> gbands;
  for (int b = 0; b < 4; ++b) gbands.push_back(at::empty_like(bands[b], at::MemoryFormat::Contiguous));
  const int64_t ng = groups_of(g);
  const int64_t items = layout == 1 ? g.N * g.C : g.C * ng;
  const int64_t np = g.nparam();
  at::Tensor part = at::empty({items, np}, bands[0].options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "liftpool_up2d_backward", [&] {
    using T = scalar_t;
    const std::array<const T*, 4> bp = {bands[0].data_ptr<T>(), bands[1].data_ptr<T>(), bands[2].data_ptr<T>(),
                                        bands[3].data_ptr<T>()};
    const std::array<T*, 4> gbp = {gbands[0].data_ptr<T>(), gbands[1].data_ptr<T>(), gbands[2].data_ptr<T>(),
                                   gbands[3].data_ptr<T>()};
    const T* pp = packed.data_ptr<T>();
    const T* gxp = gx.data_ptr<T>();
    double* sp = part.data_ptr<double>();
    if (layout == 1) {
      at::parallel_for(0, items, 1, [&](int64_t b0, int64_t b1) {
        UpPlaneWork<T> ws(g, true);
        for (int64_t it = b0; it < b1; ++it) {
          ws.acc.zero();
          const std::array<const T*, 4> band = {bp[0] + it * hw, bp[1] + it * hw, bp[2] + it * hw, bp[3] + it * hw};
          const std::array<T*, 4> gband = {gbp[0] + it * hw, gbp[1] + it * hw, gbp[2] + it * hw, gbp[3] + it * hw};
          ws.backward(band, pp, it % g.C, gxp + it * HW, gband);
          for (int64_t k = 0; k < np; ++k) sp[it * np + k] = ws.acc.sum(k);
        }
      });
    } else {
      at::parallel_for(0, items, 1, [&](int64_t b0, int64_t b1) {
        UpGroupWork<T> ws(g, true);
        std::vector<T> gB[4];
        for (auto& v : gB) v.resize(static_cast<size_t>(hw * g.grp));
        for (int64_t it = b0; it < b1; ++it) {
          const int64_t c = it / ng, n0 = (it % ng) * g.grp, first = n0 * g.C + c;
          ws.G = std::min(g.grp, g.N - n0);
          ws.acc.zero();
          for (int b = 0; b < 4; ++b) ws.gather(bp[b] + first * hw, g.C * hw, hw, ws.B[b].data());
          ws.gather(gxp + first * HW, g.C * HW, HW, ws.gX.data());
          ws.backward(pp, c, {gB[0].data(), gB[1].data(), gB[2].data(), gB[3].data()});
          for (int b = 0; b < 4; ++b) ws.scatter(gB[b].data(), g.C * hw, hw, gbp[b] + first * hw);
          for (int64_t k = 0; k < np; ++k) sp[it * np + k] = ws.acc.sum(k);
        }
      });
    }
  });
  std::vector<at::Tensor> res = gbands;
  const int64_t C = g.C;
  if (layout == 1)
    append_param_grads(res, part, packed, params_in, [C](int64_t it) { return it % C; }, bands[0]);
  else
    append_param_grads(res, part, packed, params_in, [ng](int64_t it) { return it / ng; }, bands[0]);
  return res;
}

}  // namespace liftpool
