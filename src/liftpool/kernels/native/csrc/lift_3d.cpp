// Fused CPU LiftDownPool3d / LiftUpPool3d with learned P/U: forward and backward (liftpool.kernels.native).
//
// One (n, c) volume (D, H, W) per work item, lifted along W, then H, then D (liftpool.constants.AXIS_ORDER):
//   level 0: per depth slice, the width step as a rows_* step on the transposed slice (W rows of H lanes),
//            transposed back into S0 and D0 (D * H rows of w);
//   level 1: per depth slice, the vertical step (rows_*, w lanes) on S0 and D0, giving the four level-1
//            bands B1[g] (D slices of h * w), g in the channel-group order of liftpool.kernels.eager
//            (LL, HL, LH, HH);
//   level 2: the depth step (rows_*, h * w lanes) on every B1[g], giving the eight bands (d slices of h * w).
// The inverse (LiftUpPool3d) runs the inverse steps in the opposite order.  Backward saves nothing but the
// inputs and the parameters: each item recomputes its forward, keeping that item's intermediates, then runs
// the backward steps.  Parameter gradients and constraint sums are reduced in a fixed order in double.
#include "lift_common.h"
#include "lift_ops.h"

#include <type_traits>
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace liftpool {
namespace {

// Transform index of each channel group per level (liftpool.kernels.eager._level_transforms for 7
// transforms; all 0 when the weights are shared).
constexpr int64_t kT1[2] = {1, 2};
constexpr int64_t kT2[4] = {3, 5, 4, 6};

// Canonical band index (liftpool.constants.band_names(3)) of level-2 group g's s (side 0) or d (side 1).
inline int band_index(int g, int side) { return ((g & 1) << 2) | (((g >> 1) & 1) << 1) | side; }

struct Geo3 {
  Geometry g;  // N, C, H, W, h, w, K, p, T (1 or 7), mode
  int64_t D, d;
  int64_t hw() const { return g.h * g.w; }
  int64_t t1(int side) const { return g.T == 1 ? 0 : kT1[side]; }
  int64_t t2(int grp) const { return g.T == 1 ? 0 : kT2[grp]; }
};

Geo3 geo3(at::IntArrayRef size, at::ScalarType dtype, bool cpu, const at::Tensor& params, int64_t padding) {
  TORCH_CHECK(size.size() == 5, "liftpool native: x must be (N, C, D, H, W), got shape ", size);
  TORCH_CHECK(params.dim() == 4 && params.size(1) == 2 && params.size(3) >= 4 &&
                  (params.size(0) == 1 || params.size(0) == 7),
              "liftpool native: 3D params must be (1 or 7, 2, C, K + 3), got shape ", params.sizes());
  TORCH_CHECK(params.size(2) == size[1], "liftpool native: params have ", params.size(2), " channels, x has ",
              size[1]);
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "liftpool native: x must be float32 or float64, got ",
              dtype);
  TORCH_CHECK(params.scalar_type() == dtype, "liftpool native: params dtype ", params.scalar_type(),
              " differs from x dtype ", dtype);
  TORCH_CHECK(cpu && params.device().is_cpu(), "liftpool native: CPU tensors only");
  TORCH_CHECK(padding >= 0 && padding <= 3, "liftpool native: padding must be 0..3, got ", padding);
  TORCH_CHECK(size[2] >= 1 && size[3] >= 1 && size[4] >= 1, "liftpool native: empty spatial axis, shape ", size);
  TORCH_CHECK(size[1] >= 1, "liftpool native: x has no channels (C = 0), shape ", size);
  Geo3 r;
  r.g.N = size[0];
  r.g.C = size[1];
  r.D = size[2];
  r.g.H = size[3];
  r.g.W = size[4];
  r.d = (r.D + 1) / 2;
  r.g.h = (r.g.H + 1) / 2;
  r.g.w = (r.g.W + 1) / 2;
  r.g.K = params.size(3) - 3;
  TORCH_CHECK(r.g.K % 2 == 1, "liftpool native: kernel_size must be odd, got ", r.g.K);
  r.g.p = r.g.K / 2;
  r.g.T = params.size(0);
  r.g.mode = static_cast<int>(padding);
  return r;
}

template <typename T>
Lifter<T> lifter3(const T* params, const Geo3& G, int64_t t, int64_t which, int64_t c) {
  return lifter_of(params, G.g, t, which, c);
}

// -------------------------------------------------------------------------------------- transpose
#if defined(__AVX__)
// dst (8 x 8, row stride ldd) = transpose of src (8 x 8, row stride lds)
__attribute__((always_inline)) inline void transpose8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + lds), r2 = _mm256_loadu_ps(src + 2 * lds),
               r3 = _mm256_loadu_ps(src + 3 * lds), r4 = _mm256_loadu_ps(src + 4 * lds),
               r5 = _mm256_loadu_ps(src + 5 * lds), r6 = _mm256_loadu_ps(src + 6 * lds),
               r7 = _mm256_loadu_ps(src + 7 * lds);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
               t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)),
               u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)),
               u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)),
               u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)),
               u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)),
               u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2)),
               u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)),
               u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

// dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols (8 x 8 blocks; AVX for float when built with it)
template <typename T>
void transpose(const T* __restrict src, int64_t rows, int64_t cols, int64_t lds, T* __restrict dst, int64_t ldd) {
  for (int64_t i0 = 0; i0 < rows; i0 += 8) {
    const int64_t ni = std::min<int64_t>(8, rows - i0);
    for (int64_t j0 = 0; j0 < cols; j0 += 8) {
      const int64_t nj = std::min<int64_t>(8, cols - j0);
#if defined(__AVX__)
      if constexpr (std::is_same<T, float>::value) {
        if (ni == 8 && nj == 8) {
          transpose8x8(src + i0 * lds + j0, lds, dst + j0 * ldd + i0, ldd);
          continue;
        }
      }
#endif
      for (int64_t i = i0; i < i0 + ni; ++i)
        for (int64_t j = j0; j < j0 + nj; ++j) dst[j * ldd + i] = src[i * lds + j];
    }
  }
}

// -------------------------------------------------------------------------------------- down
template <typename T>
struct DownVolume {
  Geo3 G;
  int64_t rows, keep, lanes0;
  std::vector<int64_t> idx_w, idx_h, idx_d;
  std::vector<T> xt, v0[4], St, Dt, S0, D0;  // level 0: transposed slice, aP, pP, aU, pU, s, d per slice; S0, D0
  std::vector<T> v1[4], B1[4];                // level 1: aP, pP, aU, pU per (slice, side); bands
  std::vector<T> v2[4], B2[8];                // level 2: aP, pP, aU, pU per group; bands (canonical)
  std::vector<T> zero, dump, gtail, ga, gd;
  std::vector<T> gS0, gD0, gB1[4], gSt, gDt, gxt;
  std::vector<const T*> ptr;
  std::vector<T*> gptr;
  Accumulators<T> acc;
  bool cons = true;  // backward: the constraint sums have an incoming gradient

  DownVolume(const Geo3& geo, bool backward) : G(geo) {
    const Geometry& g = G.g;
    const int64_t w = g.w, p = g.p, hw = G.hw(), H = g.H;
    rows = G.D * H;
    keep = backward ? 1 : 0;
    lanes0 = std::max(hw, H);
    pad_table(idx_w, w, p, g.mode);
    pad_table(idx_h, g.h, p, g.mode);
    pad_table(idx_d, G.d, p, g.mode);
    const int64_t ks = backward ? G.D : 1;  // slices of level-0 intermediates kept
    xt.resize(static_cast<size_t>(ks * g.W * H));
    for (auto& v : v0) v.resize(static_cast<size_t>(ks * w * H));
    St.resize(static_cast<size_t>(ks * w * H));
    Dt.resize(static_cast<size_t>(ks * w * H));
    S0.resize(static_cast<size_t>(rows * w));
    D0.resize(static_cast<size_t>(rows * w));
    for (auto& v : v1) v.resize(static_cast<size_t>((backward ? 2 * G.D * g.h : 1) * w));
    for (auto& v : B1) v.resize(static_cast<size_t>(G.D * hw));
    for (auto& v : v2) v.resize(static_cast<size_t>((backward ? 4 * G.d : 1) * hw));
    for (auto& v : B2) v.resize(static_cast<size_t>(G.d * hw));
    zero.assign(static_cast<size_t>(lanes0), T(0));
    dump.resize(static_cast<size_t>(lanes0));
    const size_t np = static_cast<size_t>(std::max({g.h, G.d, w}) + 2 * p);
    ptr.resize(np);
    gptr.resize(np);
    if (backward) {
      for (auto* v : {&gtail, &ga}) v->resize(static_cast<size_t>(lanes0));
      gd.resize(static_cast<size_t>(std::max(std::max(G.d, g.h) * hw, w * H)));
      gS0.resize(static_cast<size_t>(rows * w));
      gD0.resize(static_cast<size_t>(rows * w));
      for (auto& v : gB1) v.resize(static_cast<size_t>(G.D * hw));
      gSt.resize(static_cast<size_t>(w * H));
      gDt.resize(static_cast<size_t>(w * H));
      gxt.resize(static_cast<size_t>(g.W * H));
    }
    acc.init(g.nparam(), std::max(w, lanes0), g.K, 6);
  }

  // Level 0 (the width step) runs on the transposed slice: W rows of H lanes, so that it is a rows_*
  // step with H-wide vector loops instead of H short rows of w outputs.
  StepBufs<T> b0(int64_t z) {
    const int64_t q = keep * z * G.g.w * G.g.H;
    return StepBufs<T>{v0[0].data() + q, v0[1].data() + q, v0[2].data() + q, v0[3].data() + q,
                       keep ? G.g.H : 0, Dt.data() + q, St.data() + q};
  }
  // slice z of x transposed (W x H; kept per slice for the backward)
  T* xz(int64_t z) { return xt.data() + keep * z * G.g.W * G.g.H; }
  void transpose_in(const T* x, int64_t z) {
    const int64_t H = G.g.H, W = G.g.W;
    transpose(x + z * H * W, H, W, W, xz(z), H);
  }
  // dst (H x w) = transpose of src (w x H)
  void transpose_wh(const T* src, T* dst) const { transpose(src, G.g.w, G.g.H, G.g.H, dst, G.g.w); }
  // dst (w x H) = transpose of src (H x w)
  void transpose_hw(const T* src, T* dst) const { transpose(src, G.g.H, G.g.w, G.g.w, dst, G.g.H); }

  // level-1 step of slice z on side (0: S0 -> groups 0 (LL, s) and 2 (LH, d); 1: D0 -> groups 1, 3)
  StepBufs<T> b1(int64_t z, int side) {
    const int64_t w = G.g.w, q = keep ? (z * 2 + side) * G.g.h * w : 0, hw = G.hw();
    return StepBufs<T>{v1[0].data() + q, v1[1].data() + q, v1[2].data() + q, v1[3].data() + q, keep ? w : 0,
                       B1[side + 2].data() + z * hw, B1[side].data() + z * hw};
  }
  StepBufs<T> b2(int grp) {
    const int64_t hw = G.hw(), q = keep ? grp * G.d * hw : 0;
    return StepBufs<T>{v2[0].data() + q, v2[1].data() + q, v2[2].data() + q, v2[3].data() + q, keep ? hw : 0,
                       B2[band_index(grp, 1)].data(), B2[band_index(grp, 0)].data()};
  }
  const T* src1(int64_t z, int side) const { return (side == 0 ? S0.data() : D0.data()) + z * G.g.H * G.g.w; }

  void forward(const T* x, const T* params, int64_t c) {
    const Geometry& g = G.g;
    const int64_t H = g.H, w = g.w;
    const Lifter<T> P0 = lifter3(params, G, 0, 0, c), U0 = lifter3(params, G, 0, 1, c);
    const Lifter<T> P1[2] = {lifter3(params, G, G.t1(0), 0, c), lifter3(params, G, G.t1(1), 0, c)};
    const Lifter<T> U1[2] = {lifter3(params, G, G.t1(0), 1, c), lifter3(params, G, G.t1(1), 1, c)};
    // levels 0 and 1 slice by slice: a slice's data are still in cache when its vertical step reads them
    for (int64_t z = 0; z < G.D; ++z) {
      transpose_in(x, z);
      const StepBufs<T> b = b0(z);
      rows_forward(xz(z), H, g.W, H, idx_w.data(), g.p, g.K, P0, U0, zero.data(), ptr.data(), b, acc.cons(0),
                   acc.cons(1));
      transpose_wh(b.s, S0.data() + z * H * w);
      transpose_wh(b.d, D0.data() + z * H * w);
      for (int side = 0; side < 2; ++side)
        rows_forward(src1(z, side), w, H, w, idx_h.data(), g.p, g.K, P1[side], U1[side], zero.data(), ptr.data(),
                     b1(z, side), acc.cons(2), acc.cons(3));
    }
    for (int grp = 0; grp < 4; ++grp) {
      const Lifter<T> P = lifter3(params, G, G.t2(grp), 0, c), U = lifter3(params, G, G.t2(grp), 1, c);
      rows_forward(B1[grp].data(), G.hw(), G.D, G.hw(), idx_d.data(), g.p, g.K, P, U, zero.data(), ptr.data(), b2(grp),
                   acc.cons(4), acc.cons(5));
    }
  }

  // gband[b]: gradient of canonical band b (d x hw) or null; coef: constraint coefficients per level (u, p)
  void backward(const T* x, const T* params, int64_t c, const std::array<const T*, 8>& gband,
                const std::array<T, 6>& coef, T* gx) {
    const Geometry& g = G.g;
    const int64_t hw = G.hw(), H = g.H, W = g.W, w = g.w;
    forward(x, params, c);
    for (int grp = 0; grp < 4; ++grp) {
      const int64_t t = G.t2(grp);
      const Lifter<T> P = lifter3(params, G, t, 0, c), U = lifter3(params, G, t, 1, c);
      const T* gs = gband[band_index(grp, 0)];
      const T* gdd = gband[band_index(grp, 1)];
      rows_backward(B1[grp].data(), hw, G.D, hw, idx_d.data(), g.p, g.K, P, U, zero.data(), dump.data(), ptr.data(),
                    gptr.data(), b2(grp), gs ? gs : zero_band(0), gdd ? gdd : zero_band(1), coef[4], coef[5], cons,
                    gB1[grp].data(), gd.data(), ga.data(), gtail.data(), acc.lifter(t, 0), acc.lifter(t, 1));
    }
    const Lifter<T> P0 = lifter3(params, G, 0, 0, c), U0 = lifter3(params, G, 0, 1, c);
    // levels 1 and 0 slice by slice (see forward)
    for (int64_t z = 0; z < G.D; ++z) {
      for (int side = 0; side < 2; ++side) {
        const int64_t t = G.t1(side);
        const Lifter<T> P = lifter3(params, G, t, 0, c), U = lifter3(params, G, t, 1, c);
        T* gdst = side == 0 ? gS0.data() : gD0.data();
        rows_backward(src1(z, side), w, H, w, idx_h.data(), g.p, g.K, P, U, zero.data(), dump.data(), ptr.data(),
                      gptr.data(), b1(z, side), gB1[side].data() + z * hw, gB1[side + 2].data() + z * hw, coef[2],
                      coef[3], cons, gdst + z * H * w, gd.data(), ga.data(), gtail.data(), acc.lifter(t, 0),
                      acc.lifter(t, 1));
      }
      transpose_hw(gS0.data() + z * H * w, gSt.data());
      transpose_hw(gD0.data() + z * H * w, gDt.data());
      rows_backward(xz(z), H, W, H, idx_w.data(), g.p, g.K, P0, U0, zero.data(), dump.data(), ptr.data(),
                    gptr.data(), b0(z), gSt.data(), gDt.data(), coef[0], coef[1], cons, gxt.data(), gd.data(), ga.data(),
                    gtail.data(), acc.lifter(0, 0), acc.lifter(0, 1));
      transpose(gxt.data(), W, H, H, gx + z * H * W, W);
    }
  }

  std::vector<T> zeros_[2];
  const T* zero_band(int k) {
    auto& z = zeros_[k];
    if (z.empty()) z.assign(static_cast<size_t>(G.d * G.hw()), T(0));
    return z.data();
  }
};

// ---------------------------------------------------------------------------------------- up
template <typename T>
struct UpVolume {
  Geo3 G;
  int64_t rows, keep, lanes0;
  std::vector<int64_t> idx_w, idx_h, idx_d;
  std::vector<T> v2[4], B1[4], v1[4], S0, D0, v0[4], St, Dt, xt, otail, zero, dump;
  std::vector<T> gS0, gD0, gB1[4], gSt, gDt, gxt, ga, ge;
  std::vector<const T*> ptr;
  std::vector<T*> gptr;
  Accumulators<T> acc;

  UpVolume(const Geo3& geo, bool backward) : G(geo) {
    const Geometry& g = G.g;
    const int64_t w = g.w, p = g.p, hw = G.hw(), H = g.H;
    rows = G.D * H;
    keep = backward ? 1 : 0;
    lanes0 = std::max(hw, H);
    pad_table(idx_w, w, p, g.mode);
    pad_table(idx_h, g.h, p, g.mode);
    pad_table(idx_d, G.d, p, g.mode);
    for (auto& v : v2) v.resize(static_cast<size_t>((backward ? 4 * G.d : 1) * hw));
    for (auto& v : B1) v.resize(static_cast<size_t>(G.D * hw));
    for (auto& v : v1) v.resize(static_cast<size_t>((backward ? 2 * G.D * g.h : 1) * w));
    S0.resize(static_cast<size_t>(rows * w));
    D0.resize(static_cast<size_t>(rows * w));
    const int64_t ks = backward ? G.D : 1;  // slices of level-0 intermediates kept
    for (auto& v : v0) v.resize(static_cast<size_t>(ks * w * H));
    St.resize(static_cast<size_t>(ks * w * H));
    Dt.resize(static_cast<size_t>(ks * w * H));
    xt.resize(static_cast<size_t>(ks * g.W * H));
    otail.resize(static_cast<size_t>(lanes0));
    zero.assign(static_cast<size_t>(lanes0), T(0));
    dump.resize(static_cast<size_t>(lanes0));
    const size_t np = static_cast<size_t>(std::max({g.h, G.d, w}) + 2 * p);
    ptr.resize(np);
    gptr.resize(np);
    if (backward) {
      gS0.resize(static_cast<size_t>(rows * w));
      gD0.resize(static_cast<size_t>(rows * w));
      for (auto& v : gB1) v.resize(static_cast<size_t>(G.D * hw));
      gSt.resize(static_cast<size_t>(w * H));
      gDt.resize(static_cast<size_t>(w * H));
      gxt.resize(static_cast<size_t>(g.W * H));
      ga.resize(static_cast<size_t>(lanes0));
      ge.resize(static_cast<size_t>(std::max(std::max(G.d, g.h) * hw, w * H)));
    }
    acc.init(g.nparam(), std::max(w, lanes0), g.K);
  }

  InvBufs<T> b2(int grp) {
    const int64_t hw = G.hw(), q = keep ? grp * G.d * hw : 0;
    return InvBufs<T>{v2[0].data() + q, v2[1].data() + q, v2[2].data() + q, v2[3].data() + q, keep ? hw : 0};
  }
  InvBufs<T> b1(int64_t z, int side) {
    const int64_t w = G.g.w, q = keep ? (z * 2 + side) * G.g.h * w : 0;
    return InvBufs<T>{v1[0].data() + q, v1[1].data() + q, v1[2].data() + q, v1[3].data() + q, keep ? w : 0};
  }
  // level 0 (the width step) runs on transposed slices: s, d are w rows of H lanes, the output W rows of H
  InvBufs<T> b0(int64_t z) {
    const int64_t q = keep * z * G.g.w * G.g.H;
    return InvBufs<T>{v0[0].data() + q, v0[1].data() + q, v0[2].data() + q, v0[3].data() + q, keep ? G.g.H : 0};
  }
  T* st(int64_t z) { return St.data() + keep * z * G.g.w * G.g.H; }
  T* dt(int64_t z) { return Dt.data() + keep * z * G.g.w * G.g.H; }
  T* xz(int64_t z) { return xt.data() + keep * z * G.g.W * G.g.H; }
  T* dst1(int side) { return side == 0 ? S0.data() : D0.data(); }

  // band[b]: canonical band b (d x hw); x: output volume or null (backward recompute)
  void forward(const std::array<const T*, 8>& band, const T* params, int64_t c, T* x) {
    const Geometry& g = G.g;
    const int64_t hw = G.hw(), H = g.H, W = g.W, w = g.w;
    for (int grp = 0; grp < 4; ++grp) {
      const Lifter<T> P = lifter3(params, G, G.t2(grp), 0, c), U = lifter3(params, G, G.t2(grp), 1, c);
      rows_inverse(band[band_index(grp, 0)], band[band_index(grp, 1)], hw, G.D, hw, idx_d.data(), g.p, g.K, P, U,
                   zero.data(), ptr.data(), b2(grp), B1[grp].data(), hw, otail.data());
    }
    const Lifter<T> P0 = lifter3(params, G, 0, 0, c), U0 = lifter3(params, G, 0, 1, c);
    const Lifter<T> P1[2] = {lifter3(params, G, G.t1(0), 0, c), lifter3(params, G, G.t1(1), 0, c)};
    const Lifter<T> U1[2] = {lifter3(params, G, G.t1(0), 1, c), lifter3(params, G, G.t1(1), 1, c)};
    // levels 1 and 0 slice by slice: a slice's data are still in cache when the width step reads them
    for (int64_t z = 0; z < G.D; ++z) {
      for (int side = 0; side < 2; ++side)
        rows_inverse(B1[side].data() + z * hw, B1[side + 2].data() + z * hw, w, H, w, idx_h.data(), g.p, g.K,
                     P1[side], U1[side], zero.data(), ptr.data(), b1(z, side), dst1(side) + z * H * w, w,
                     otail.data());
      transpose(S0.data() + z * H * w, H, w, w, st(z), H);
      transpose(D0.data() + z * H * w, H, w, w, dt(z), H);
      rows_inverse(st(z), dt(z), H, W, H, idx_w.data(), g.p, g.K, P0, U0, zero.data(), ptr.data(), b0(z), xz(z), H,
                   otail.data());
      if (x) transpose(xz(z), W, H, H, x + z * H * W, W);
    }
  }

  void backward(const std::array<const T*, 8>& band, const T* params, int64_t c, const T* gx,
                const std::array<T*, 8>& gband) {
    const Geometry& g = G.g;
    const int64_t hw = G.hw(), H = g.H, W = g.W, w = g.w;
    forward(band, params, c, nullptr);
    const Lifter<T> P0 = lifter3(params, G, 0, 0, c), U0 = lifter3(params, G, 0, 1, c);
    // levels 0 and 1 slice by slice (see forward)
    for (int64_t z = 0; z < G.D; ++z) {
      transpose(gx + z * H * W, H, W, W, gxt.data(), H);
      rows_inverse_backward(dt(z), H, W, H, idx_w.data(), g.p, g.K, P0, U0, zero.data(), dump.data(), ptr.data(),
                            gptr.data(), b0(z), xz(z), H, gxt.data(), H, gSt.data(), gDt.data(), H, ge.data(),
                            ga.data(), acc.lifter(0, 0), acc.lifter(0, 1));
      transpose(gSt.data(), w, H, H, gS0.data() + z * H * w, w);
      transpose(gDt.data(), w, H, H, gD0.data() + z * H * w, w);
      for (int side = 0; side < 2; ++side) {
        const int64_t t = G.t1(side);
        const Lifter<T> P = lifter3(params, G, t, 0, c), U = lifter3(params, G, t, 1, c);
        const T* gsrc = side == 0 ? gS0.data() : gD0.data();
        rows_inverse_backward(B1[side + 2].data() + z * hw, w, H, w, idx_h.data(), g.p, g.K, P, U, zero.data(),
                              dump.data(), ptr.data(), gptr.data(), b1(z, side), dst1(side) + z * H * w, w,
                              gsrc + z * H * w, w, gB1[side].data() + z * hw, gB1[side + 2].data() + z * hw, w,
                              ge.data(), ga.data(), acc.lifter(t, 0), acc.lifter(t, 1));
      }
    }
    for (int grp = 0; grp < 4; ++grp) {
      const int64_t t = G.t2(grp);
      const Lifter<T> P = lifter3(params, G, t, 0, c), U = lifter3(params, G, t, 1, c);
      rows_inverse_backward(band[band_index(grp, 1)], hw, G.D, hw, idx_d.data(), g.p, g.K, P, U, zero.data(),
                            dump.data(), ptr.data(), gptr.data(), b2(grp), B1[grp].data(), hw, gB1[grp].data(), hw,
                            gband[band_index(grp, 0)], gband[band_index(grp, 1)], hw, ge.data(), ga.data(),
                            acc.lifter(t, 0), acc.lifter(t, 1));
    }
  }
};

}  // namespace

std::vector<at::Tensor> down3d_forward_list(const at::Tensor& x_in, const std::vector<at::Tensor>& params_in,
                                            int64_t padding, int64_t band_mask, double scale, bool constraints,
                                            bool details) {
  TORCH_CHECK(x_in.dim() == 5, "liftpool native: x must be (N, C, D, H, W), got shape ", x_in.sizes());
  const at::Tensor params = pack_params(params_in, x_in);
  const Geo3 G = geo3(x_in.sizes(), x_in.scalar_type(), x_in.device().is_cpu(), params, padding);
  TORCH_CHECK(band_mask >= 1 && band_mask <= 255, "liftpool native: 3D band mask must be 1..255, got ", band_mask);
  const Geometry& g = G.g;
  const at::Tensor x = x_in.contiguous();
  const int64_t hw = G.hw(), vol_in = G.D * g.H * g.W, vol = G.d * hw, items = g.N * g.C, plane_out = items * vol;
  at::Tensor out = at::empty({g.N, g.C, G.d, g.h, g.w}, x.options());
  at::Tensor det = details ? at::empty({7, g.N, g.C, G.d, g.h, g.w}, x.options()) : at::empty({0}, x.options());
  at::Tensor part = at::zeros({items, 6}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "liftpool_down3d_forward", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    const T* pp = params.data_ptr<T>();
    T* op = out.data_ptr<T>();
    T* dp = details ? det.data_ptr<T>() : nullptr;
    double* sp = part.data_ptr<double>();
    const T s = static_cast<T>(scale);
    at::parallel_for(0, items, 1, [&](int64_t b0, int64_t b1) {
      DownVolume<T> ws(G, false);
      for (int64_t it = b0; it < b1; ++it) {
        ws.acc.zero();
        ws.forward(xp + it * vol_in, pp, it % g.C);
        T* __restrict o = op + it * vol;
        bool first = true;
        for (int b = 0; b < 8; ++b) {
          if (!(band_mask & (1 << b))) continue;
          const T* __restrict src = ws.B2[b].data();
          if (first) {
            std::copy(src, src + vol, o);
            first = false;
          } else {
            for (int64_t q = 0; q < vol; ++q) o[q] += src[q];
          }
        }
        if (scale != 1.0)
          for (int64_t q = 0; q < vol; ++q) o[q] *= s;
        if (dp)
          for (int b = 1; b < 8; ++b) std::copy(ws.B2[b].data(), ws.B2[b].data() + vol, dp + (b - 1) * plane_out + it * vol);
        if (constraints)
          for (int k = 0; k < 6; ++k) sp[it * 6 + k] = ws.acc.sum(ws.acc.nslot - 6 + k);
      }
    });
  });
  at::Tensor cons = at::zeros({2}, x.options());
  if (constraints) {
    const double* sp = part.data_ptr<double>();
    double sm[6] = {0, 0, 0, 0, 0, 0};
    for (int64_t it = 0; it < items; ++it)
      for (int k = 0; k < 6; ++k) sm[k] += sp[it * 6 + k];
    const double n0 = mean_count(items * G.D * g.H * g.w), n1 = mean_count(items * G.D * hw),
                 n2 = mean_count(items * vol);
    cons = at::tensor({sm[0] / n0 + sm[2] / n1 + sm[4] / n2, sm[1] / n0 + sm[3] / n1 + sm[5] / n2}, part.options())
               .to(x.scalar_type());
  }
  return {out, det, cons};
}

std::vector<at::Tensor> down3d_backward_list(const at::Tensor& x_in, const std::vector<at::Tensor>& params_in,
                                             const std::optional<at::Tensor>& grad_out,
                                             const std::optional<at::Tensor>& grad_details,
                                             const at::Tensor& grad_cons, int64_t padding, int64_t band_mask,
                                             double scale) {
  TORCH_CHECK(x_in.dim() == 5, "liftpool native: x must be (N, C, D, H, W), got shape ", x_in.sizes());
  const at::Tensor params = pack_params(params_in, x_in);
  const Geo3 G = geo3(x_in.sizes(), x_in.scalar_type(), x_in.device().is_cpu(), params, padding);
  TORCH_CHECK(band_mask >= 1 && band_mask <= 255, "liftpool native: 3D band mask must be 1..255, got ", band_mask);
  const Geometry& g = G.g;
  const at::Tensor x = x_in.contiguous();
  const int64_t hw = G.hw(), vol_in = G.D * g.H * g.W, vol = G.d * hw, items = g.N * g.C, plane_out = items * vol;
  const at::Tensor go = incoming_grad(grad_out, {g.N, g.C, G.d, g.h, g.w}, x, "grad_out", false);
  const at::Tensor gdet = incoming_grad(grad_details, {7, g.N, g.C, G.d, g.h, g.w}, x, "grad_details", true);
  const ConsGrad gc = cons_grad(grad_cons);
  const double gcu = gc.u, gcp = gc.p;
  const double n0 = mean_count(items * G.D * g.H * g.w), n1 = mean_count(items * G.D * hw), n2 = mean_count(items * vol);
  at::Tensor gx = at::empty_like(x);
  const int64_t np = g.nparam();
  at::Tensor part = at::empty({items, np}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "liftpool_down3d_backward", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    const T* pp = params.data_ptr<T>();
    const T* gop = go.defined() ? go.data_ptr<T>() : nullptr;
    const T* gdp = gdet.defined() ? gdet.data_ptr<T>() : nullptr;
    T* gxp = gx.data_ptr<T>();
    double* sp = part.data_ptr<double>();
    const std::array<T, 6> coef = {static_cast<T>(2 * gcu / n0), static_cast<T>(2 * gcp / n0),
                                   static_cast<T>(2 * gcu / n1), static_cast<T>(2 * gcp / n1),
                                   static_cast<T>(2 * gcu / n2), static_cast<T>(2 * gcp / n2)};
    const T s = static_cast<T>(scale);
    at::parallel_for(0, items, 1, [&](int64_t b0, int64_t b1) {
      DownVolume<T> ws(G, true);
      ws.cons = gc.present;
      std::vector<T> gb(static_cast<size_t>(8 * vol));
      for (int64_t it = b0; it < b1; ++it) {
        ws.acc.zero();
        std::array<const T*, 8> gband{};
        if (gop && !gdp) {
          // no detail gradients: every chosen band receives the same scaled output gradient, built once
          T* __restrict dst = gb.data();
          const T* __restrict go_it = gop + it * vol;
          if (scale == 1.0) {
            for (int b = 0; b < 8; ++b) gband[b] = (band_mask & (1 << b)) ? go_it : nullptr;
          } else {
            for (int64_t q = 0; q < vol; ++q) dst[q] = s * go_it[q];
            for (int b = 0; b < 8; ++b) gband[b] = (band_mask & (1 << b)) ? dst : nullptr;
          }
        } else {
          for (int b = 0; b < 8; ++b) {
          const bool chosen = gop && (band_mask & (1 << b));
          const T* dg = (b > 0 && gdp) ? gdp + (b - 1) * plane_out + it * vol : nullptr;
          if (!chosen && !dg) {
            gband[b] = nullptr;
            continue;
          }
          T* __restrict dst = gb.data() + b * vol;
          const T* __restrict go_it = gop ? gop + it * vol : nullptr;
          for (int64_t q = 0; q < vol; ++q) dst[q] = (chosen ? s * go_it[q] : T(0)) + (dg ? dg[q] : T(0));
          gband[b] = dst;
          }
        }
        ws.backward(xp + it * vol_in, pp, it % g.C, gband, coef, gxp + it * vol_in);
        for (int64_t k = 0; k < np; ++k) sp[it * np + k] = ws.acc.sum(k);
      }
    });
  });
  std::vector<at::Tensor> res = {gx};
  const int64_t C = g.C;
  append_param_grads(res, part, params, params_in, [C](int64_t it) { return it % C; }, x);
  return res;
}

at::Tensor up3d_forward_list(const std::vector<at::Tensor>& bands_in, const std::vector<at::Tensor>& params_in,
                             int64_t D, int64_t H, int64_t W, int64_t padding) {
  TORCH_CHECK(bands_in.size() == 8, "liftpool native: up3d needs 8 bands, got ", bands_in.size());
  std::vector<at::Tensor> bands;
  for (const at::Tensor& b : bands_in) {
    check_tensor(b, "a band");
    TORCH_CHECK(b.sizes() == bands_in[0].sizes() && b.scalar_type() == bands_in[0].scalar_type(),
                "liftpool native: band shapes/dtypes differ: ", b.sizes(), " vs ", bands_in[0].sizes());
    bands.push_back(b.contiguous());
  }
  const at::Tensor& low = bands[0];
  TORCH_CHECK(low.dim() == 5, "liftpool native: bands must be (N, C, d, h, w), got shape ", low.sizes());
  TORCH_CHECK(D >= 1 && H >= 1 && W >= 1 && (D + 1) / 2 == low.size(2) && (H + 1) / 2 == low.size(3) &&
                  (W + 1) / 2 == low.size(4),
              "liftpool native: output size (", D, ", ", H, ", ", W, ") does not match bands of spatial size ",
              low.sizes().slice(2));
  const at::Tensor params = pack_params(params_in, low);
  const Geo3 G = geo3({low.size(0), low.size(1), D, H, W}, low.scalar_type(), low.device().is_cpu(), params, padding);
  const Geometry& g = G.g;
  const int64_t vol = G.d * G.hw(), vol_out = D * H * W, items = g.N * g.C;
  at::Tensor x = at::empty({g.N, g.C, D, H, W}, low.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "liftpool_up3d_forward", [&] {
    using T = scalar_t;
    std::array<const T*, 8> bp{};
    for (int b = 0; b < 8; ++b) bp[b] = bands[b].data_ptr<T>();
    const T* pp = params.data_ptr<T>();
    T* xp = x.data_ptr<T>();
    at::parallel_for(0, items, 1, [&](int64_t b0, int64_t b1) {
      UpVolume<T> ws(G, false);
      for (int64_t it = b0; it < b1; ++it) {
        std::array<const T*, 8> band{};
        for (int b = 0; b < 8; ++b) band[b] = bp[b] + it * vol;
        ws.forward(band, pp, it % g.C, xp + it * vol_out);
      }
    });
  });
  return x;
}

std::vector<at::Tensor> up3d_backward_list(const std::vector<at::Tensor>& bands_in,
                                           const std::vector<at::Tensor>& params_in, const at::Tensor& grad_x_in,
                                           int64_t padding) {
  TORCH_CHECK(bands_in.size() == 8, "liftpool native: up3d needs 8 bands, got ", bands_in.size());
  check_tensor(grad_x_in, "grad_x");
  TORCH_CHECK(grad_x_in.dim() == 5, "liftpool native: grad_x must be (N, C, D, H, W), got shape ", grad_x_in.sizes());
  std::vector<at::Tensor> bands;
  for (const at::Tensor& b : bands_in) {
    check_tensor(b, "a band");
    TORCH_CHECK(b.sizes() == bands_in[0].sizes() && b.scalar_type() == bands_in[0].scalar_type(),
                "liftpool native: band shapes/dtypes differ");
    bands.push_back(b.contiguous());
  }
  const at::Tensor& low = bands[0];
  const int64_t D = grad_x_in.size(2), H = grad_x_in.size(3), W = grad_x_in.size(4);
  TORCH_CHECK(low.dim() == 5 && grad_x_in.size(0) == low.size(0) && grad_x_in.size(1) == low.size(1) &&
                  (D + 1) / 2 == low.size(2) && (H + 1) / 2 == low.size(3) && (W + 1) / 2 == low.size(4),
              "liftpool native: grad_x shape ", grad_x_in.sizes(), " does not match the bands ", low.sizes());
  const at::Tensor params = pack_params(params_in, low);
  const Geo3 G = geo3({low.size(0), low.size(1), D, H, W}, low.scalar_type(), low.device().is_cpu(), params, padding);
  const Geometry& g = G.g;
  const at::Tensor gx = grad_x_in.to(low.scalar_type()).contiguous();
  const int64_t vol = G.d * G.hw(), vol_out = D * H * W, items = g.N * g.C, np = g.nparam();
  std::vector<at::Tensor> gbands;
  for (int b = 0; b < 8; ++b) gbands.push_back(at::empty_like(bands[b], at::MemoryFormat::Contiguous));
  at::Tensor part = at::empty({items, np}, low.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(low.scalar_type(), "liftpool_up3d_backward", [&] {
    using T = scalar_t;
    std::array<const T*, 8> bp{};
    std::array<T*, 8> gbp{};
    for (int b = 0; b < 8; ++b) {
      bp[b] = bands[b].data_ptr<T>();
      gbp[b] = gbands[b].data_ptr<T>();
    }
    const T* pp = params.data_ptr<T>();
    const T* gxp = gx.data_ptr<T>();
    double* sp = part.data_ptr<double>();
    at::parallel_for(0, items, 1, [&](int64_t b0, int64_t b1) {
      UpVolume<T> ws(G, true);
      for (int64_t it = b0; it < b1; ++it) {
        ws.acc.zero();
        std::array<const T*, 8> band{};
        std::array<T*, 8> gband{};
        for (int b = 0; b < 8; ++b) {
          band[b] = bp[b] + it * vol;
          gband[b] = gbp[b] + it * vol;
        }
        ws.backward(band, pp, it % g.C, gxp + it * vol_out, gband);
        for (int64_t k = 0; k < np; ++k) sp[it * np + k] = ws.acc.sum(k);
      }
    });
  });
  std::vector<at::Tensor> res = gbands;
  const int64_t C = g.C;
  append_param_grads(res, part, params, params_in, [C](int64_t it) { return it % C; }, low);
  return res;
}

}  // namespace liftpool
