// One learned lifting step (predict, then update) of LiftDownPool2d, forward and backward, on
// cache-resident buffers.  Maths (liftpool.functional.lift_1d with liftpool.lifters.LearnedLifter):
//
//   d = o - P(e),   s = e + U(d),   F(v) = tanh(pw * relu(b + sum_k t[k] v[i + k - p]) + pb)
//
// with "same" padding of the K-tap convolution given by an index table (pad_table) and the
// constraint sums (s - o)^2 and d^2.  Two shapes of step:
//   * rows_*: the lifted axis is the row index of a 2D array of `width` contiguous lanes; every
//     inner loop runs over the lanes (vertical step of the plane layout, both steps of the
//     images-innermost layout);
//   * hrow_*: the lifted axis is the contiguous axis of one image row (horizontal step of the plane
//     layout); the row is split into even/odd samples into a padded buffer first.
// Inner loops have no per-element branches: padding is resolved per row (pointer tables) or in
// separate edge loops, ReLU/derivative masks are selects, tanh is a branch-free rational function.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace liftpool {

enum PadMode : int { kReflect = 0, kReplicate = 1, kZeros = 2, kCircular = 3 };

// Source sample of padded position q (q in [-p, n + p)) of an axis of n samples, exactly as
// liftpool.functional.pad_axis pads it; -1 stands for a zero sample.  Reflection needs p < n and
// falls back to replicate otherwise; circular padding wraps as often as needed.
inline int64_t pad_source(int64_t q, int64_t n, int64_t p, int mode) {
  if (q >= 0 && q < n) return q;
  if (mode == kReflect && p >= n) mode = kReplicate;
  switch (mode) {
    case kReflect:
      return q < 0 ? -q : 2 * (n - 1) - q;
    case kReplicate:
      return q < 0 ? 0 : n - 1;
    case kZeros:
      return -1;
    default:
      return ((q % n) + n) % n;
  }
}

// idx[q + p] = pad_source(q) for q in [-p, n + p).
inline void pad_table(std::vector<int64_t>& idx, int64_t n, int64_t p, int mode) {
  idx.resize(static_cast<size_t>(n + 2 * p));
  for (int64_t q = -p; q < n + p; ++q) idx[static_cast<size_t>(q + p)] = pad_source(q, n, p, mode);
}

// tanh for float: the rational approximation Eigen uses for float (odd degree 13 / even degree 6 on
// [-7.998, 7.998], clamped outside; MPL-2.0 constants), branch-free so that `omp simd` loops
// vectorise it.  Max error vs std::tanh is checked by tests/native (tanh_max_ulp).
inline float fast_tanh(float a) {
  const float lim = 7.99881172180175781f;
  const float x = std::min(std::max(a, -lim), lim);
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * x;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  const float r = p / q;
  return std::fabs(x) < 0.0004f ? x : r;
}
inline double fast_tanh(double a) { return std::tanh(a); }

// ReLU as ATen computes it: NaN stays NaN (a compare-and-select, as cheap as `a > 0 ? a : 0`, which maps NaN to 0).
template <typename T>
inline T relu(T a) {
  return a <= T(0) ? T(0) : a;
}

// ReLU's backward as ATen's threshold_backward: the gradient passes unless a <= 0 (so it passes at a NaN).
template <typename T>
inline T relu_grad(T a, T g) {
  return a <= T(0) ? T(0) : g;
}

// One predictor or updater of one channel: K taps, bias, 1x1 weight and 1x1 bias.
template <typename T>
struct Lifter {
  const T* taps;
  T bias, pw, pb;
};

// Per-lane accumulators of the parameter gradients of one lifter: slot k < K are the taps, then
// bias, pw, pb; each slot holds `stride` lanes.
template <typename T>
struct GradSlots {
  T* base;
  int64_t stride;
  int64_t K;
  T* tap(int64_t k) const { return base + k * stride; }
  T* bias() const { return base + K * stride; }
  T* pw() const { return base + (K + 1) * stride; }
  T* pb() const { return base + (K + 2) * stride; }
};

// a[j] = bias + sum_k taps[k] * rows[k][j].  Common tap counts get a compile-time K (taps unrolled,
// every row a contiguous vector load); with a run-time K, GCC fuses two taps and loads the second
// row with gathers (measured in perf), so the generic loop is only the fallback.
template <typename T, int KK>
inline void conv_rows_fixed(const T* const* rows, const Lifter<T>& f, int64_t width, T* __restrict a) {
  const T bias = f.bias;
  T t[KK];
  const T* r[KK];
  for (int k = 0; k < KK; ++k) {
    t[k] = f.taps[k];
    r[k] = rows[k];
  }
#pragma omp simd
  for (int64_t j = 0; j < width; ++j) {
    T acc = bias;
#pragma GCC unroll 16
    for (int k = 0; k < KK; ++k) acc += t[k] * r[k][j];
    a[j] = acc;
  }
}

template <typename T>
inline void conv_rows(const T* const* rows, const Lifter<T>& f, int64_t K, int64_t width, T* __restrict a) {
  switch (K) {
    case 3:
      return conv_rows_fixed<T, 3>(rows, f, width, a);
    case 5:
      return conv_rows_fixed<T, 5>(rows, f, width, a);
    case 7:
      return conv_rows_fixed<T, 7>(rows, f, width, a);
    default:
      break;
  }
  for (int64_t j = 0; j < width; ++j) a[j] = f.bias;
  for (int64_t k = 0; k < K; ++k) {
    const T tk = f.taps[k];
    const T* __restrict r = rows[k];
    for (int64_t j = 0; j < width; ++j) a[j] += tk * r[j];
  }
}

// Buffers of one rows_* step over n pairs of rows: pre-activations and activations of P and U
// (row stride `istride`; 0 = one reused row when nothing is kept for backward), d and s (dense,
// row stride = width).
template <typename T>
struct StepBufs {
  T* aP;
  T* pP;
  T* aU;
  T* pU;
  int64_t istride;
  T* d;
  T* s;
};

// ------------------------------------------------------------------------------------------ rows_*
// Source: M rows of `width` lanes with row stride ld; even rows e_i = row 2i, odd rows
// o_i = row min(2i + 1, M - 1) (an odd M is extended by its last row); n = ceil(M / 2) pairs.
template <typename T>
void rows_forward(const T* src, int64_t ld, int64_t M, int64_t width, const int64_t* idx, int64_t p, int64_t K,
                  const Lifter<T>& P, const Lifter<T>& U, const T* zero_row, const T** ptr, const StepBufs<T>& b,
                  T* __restrict acc_u, T* __restrict acc_p) {
  const int64_t n = (M + 1) / 2;
  for (int64_t q = 0; q < n + 2 * p; ++q) ptr[q] = idx[q] < 0 ? zero_row : src + 2 * idx[q] * ld;
  for (int64_t i = 0; i < n; ++i) {
    T* __restrict a = b.aP + i * b.istride;
    conv_rows(ptr + i, P, K, width, a);
    const T* __restrict o = src + std::min(2 * i + 1, M - 1) * ld;
    T* __restrict pp = b.pP + i * b.istride;
    T* __restrict d = b.d + i * width;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) {
      const T v = fast_tanh(P.pw * relu(a[j]) + P.pb);
      pp[j] = v;
      d[j] = o[j] - v;
    }
  }
  for (int64_t q = 0; q < n + 2 * p; ++q) ptr[q] = idx[q] < 0 ? zero_row : b.d + idx[q] * width;
  for (int64_t i = 0; i < n; ++i) {
    T* __restrict a = b.aU + i * b.istride;
    conv_rows(ptr + i, U, K, width, a);
    const T* __restrict e = src + 2 * i * ld;
    const T* __restrict o = src + std::min(2 * i + 1, M - 1) * ld;
    const T* __restrict d = b.d + i * width;
    T* __restrict pu = b.pU + i * b.istride;
    T* __restrict s = b.s + i * width;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) {
      const T v = fast_tanh(U.pw * relu(a[j]) + U.pb);
      pu[j] = v;
      const T sv = e[j] + v;
      s[j] = sv;
      const T df = sv - o[j];
      acc_u[j] += df * df;
      acc_p[j] += d[j] * d[j];
    }
  }
}

// Backward of rows_forward (b must hold the saved rows, istride = width).  gs_in, gd_in: gradients
// of s and d from downstream (n x width); au, ap: gradient coefficients of the constraint sums
// (d/ds of au/2 (s - o)^2 ...); cons: false when the constraint sums have no incoming gradient, then
// their terms are left out (reading the zero row), not multiplied by 0 (0 * inf would be NaN).
// Writes the gradient of the source rows into gsrc (M x width, dense).  gd: n x width scratch;
// ga, gtail: width scratch; dump_row: width scratch for the gradient of zero padding.
template <typename T>
void rows_backward(const T* src, int64_t ld, int64_t M, int64_t width, const int64_t* idx, int64_t p, int64_t K,
                   const Lifter<T>& P, const Lifter<T>& U, const T* zero_row, T* dump_row, const T** ptr, T** gptr,
                   const StepBufs<T>& b, const T* gs_in, const T* gd_in, T au, T ap, bool cons, T* gsrc, T* gd,
                   T* ga_row, T* gtail, const GradSlots<T>& gP, const GradSlots<T>& gU) {
  const int64_t n = (M + 1) / 2;
  auto go_row = [&](int64_t i) -> T* { return 2 * i + 1 < M ? gsrc + (2 * i + 1) * width : gtail; };
  // gradient of d from downstream and from the constraint term
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict gi = gd_in + i * width;
    const T* __restrict d = cons ? b.d + i * width : zero_row;
    T* __restrict g = gd + i * width;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) g[j] = gi[j] + ap * d[j];
  }
  // update branch: s = e + U(d)
  for (int64_t q = 0; q < n + 2 * p; ++q) {
    ptr[q] = idx[q] < 0 ? zero_row : b.d + idx[q] * width;
    gptr[q] = idx[q] < 0 ? dump_row : gd + idx[q] * width;
  }
  {
    // a local copy: GCC does not vectorise the loop below when it reads U.pw through the reference
    const T upw = U.pw;
    T* __restrict Ab = gU.bias();
    T* __restrict Aw = gU.pw();
    T* __restrict Ac = gU.pb();
    for (int64_t i = 0; i < n; ++i) {
      // o and s enter the constraint term (s - o) only
      const T* __restrict o = cons ? src + std::min(2 * i + 1, M - 1) * ld : zero_row;
      const T* __restrict s = cons ? b.s + i * width : zero_row;
      const T* __restrict pu = b.pU + i * width;
      const T* __restrict a = b.aU + i * width;
      const T* __restrict gs = gs_in + i * width;
      T* __restrict ge = gsrc + 2 * i * width;
      T* __restrict go = go_row(i);
      T* __restrict ga = ga_row;
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) {
        const T df = s[j] - o[j];
        const T gsv = gs[j] + au * df;
        ge[j] = gsv;
        go[j] = -au * df;
        const T gz = gsv * (T(1) - pu[j] * pu[j]);
        Aw[j] += gz * relu(a[j]);
        Ac[j] += gz;
        const T g = relu_grad(a[j], gz * upw);
        ga[j] = g;
        Ab[j] += g;
      }
      for (int64_t k = 0; k < K; ++k) {
        const T tk = U.taps[k];
        const T* __restrict dd = ptr[i + k];
        T* __restrict At = gU.tap(k);
        T* __restrict gp = gptr[i + k];
        for (int64_t j = 0; j < width; ++j) {
          At[j] += ga[j] * dd[j];
          gp[j] += tk * ga[j];
        }
      }
    }
  }
  // predict branch: d = o - P(e)
  for (int64_t q = 0; q < n + 2 * p; ++q) {
    ptr[q] = idx[q] < 0 ? zero_row : src + 2 * idx[q] * ld;
    gptr[q] = idx[q] < 0 ? dump_row : gsrc + 2 * idx[q] * width;
  }
  {
    const T ppw = P.pw;
    T* __restrict Ab = gP.bias();
    T* __restrict Aw = gP.pw();
    T* __restrict Ac = gP.pb();
    for (int64_t i = 0; i < n; ++i) {
      const T* __restrict pp = b.pP + i * width;
      const T* __restrict a = b.aP + i * width;
      const T* __restrict g_d = gd + i * width;
      T* __restrict go = go_row(i);
      T* __restrict ga = ga_row;
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) {
        go[j] += g_d[j];
        const T gz = -g_d[j] * (T(1) - pp[j] * pp[j]);
        Aw[j] += gz * relu(a[j]);
        Ac[j] += gz;
        const T g = relu_grad(a[j], gz * ppw);
        ga[j] = g;
        Ab[j] += g;
      }
      for (int64_t k = 0; k < K; ++k) {
        const T tk = P.taps[k];
        const T* __restrict e = ptr[i + k];
        T* __restrict At = gP.tap(k);
        T* __restrict gp = gptr[i + k];
        for (int64_t j = 0; j < width; ++j) {
          At[j] += ga[j] * e[j];
          gp[j] += tk * ga[j];
        }
      }
    }
  }
  if (M % 2) {  // the duplicated last row: its odd-row gradient goes to the same source row
    T* __restrict last = gsrc + (M - 1) * width;
    for (int64_t j = 0; j < width; ++j) last[j] += gtail[j];
  }
}

// ------------------------------------------------------------------------------------------ hrow_*
// Horizontal step of one image row of W samples (w = ceil(W / 2) pairs).  E and D are padded
// buffers of w + 2p samples (interior at offset p); O, aP, pP, aU, pU, S hold w samples.
template <typename T>
struct HRow {
  T* E;
  T* O;
  T* aP;
  T* pP;
  T* D;
  T* aU;
  T* pU;
  T* S;
};

template <typename T>
inline void fill_edges(T* v, const int64_t* idx, int64_t w, int64_t p) {
  for (int64_t q = 0; q < p; ++q) {
    v[q] = idx[q] < 0 ? T(0) : v[p + idx[q]];
    v[p + w + q] = idx[p + w + q] < 0 ? T(0) : v[p + idx[p + w + q]];
  }
}

template <typename T>
inline void fold_edges(T* g, const int64_t* idx, int64_t w, int64_t p) {
  for (int64_t q = 0; q < p; ++q) {
    if (idx[q] >= 0) g[p + idx[q]] += g[q];
    if (idx[p + w + q] >= 0) g[p + idx[p + w + q]] += g[p + w + q];
  }
}

// a[j] = bias + sum_k taps[k] * v[j + k] on a padded row; compile-time K for the common tap counts
// (accumulates in registers: one store per output instead of one load+store per tap).
template <typename T, int KK>
inline void conv_padded_fixed(const T* __restrict v, const Lifter<T>& f, int64_t w, T* __restrict a) {
  const T bias = f.bias;
  T t[KK];
  for (int k = 0; k < KK; ++k) t[k] = f.taps[k];
#pragma omp simd
  for (int64_t j = 0; j < w; ++j) {
    T acc = bias;
#pragma GCC unroll 16
    for (int k = 0; k < KK; ++k) acc += t[k] * v[j + k];
    a[j] = acc;
  }
}

template <typename T>
inline void conv_padded(const T* __restrict v, const Lifter<T>& f, int64_t K, int64_t w, T* __restrict a) {
  switch (K) {
    case 3:
      return conv_padded_fixed<T, 3>(v, f, w, a);
    case 5:
      return conv_padded_fixed<T, 5>(v, f, w, a);
    case 7:
      return conv_padded_fixed<T, 7>(v, f, w, a);
    default:
      break;
  }
  for (int64_t j = 0; j < w; ++j) a[j] = f.bias;
  for (int64_t k = 0; k < K; ++k) {
    const T tk = f.taps[k];
    const T* __restrict s = v + k;
    for (int64_t j = 0; j < w; ++j) a[j] += tk * s[j];
  }
}

template <typename T>
void hrow_forward(const T* __restrict x, int64_t W, const int64_t* idx, int64_t p, int64_t K, const Lifter<T>& P,
                  const Lifter<T>& U, const HRow<T>& r, T* __restrict acc_u, T* __restrict acc_p) {
  const int64_t w = (W + 1) / 2, half = W / 2;
  T* __restrict E = r.E;
  T* __restrict O = r.O;
  for (int64_t j = 0; j < half; ++j) {
    E[p + j] = x[2 * j];
    O[j] = x[2 * j + 1];
  }
  if (W % 2) E[p + w - 1] = O[w - 1] = x[W - 1];
  fill_edges(E, idx, w, p);
  conv_padded(E, P, K, w, r.aP);
  {
    const T* __restrict a = r.aP;
    T* __restrict pp = r.pP;
    T* __restrict D = r.D + p;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) {
      const T v = fast_tanh(P.pw * relu(a[j]) + P.pb);
      pp[j] = v;
      D[j] = O[j] - v;
    }
  }
  fill_edges(r.D, idx, w, p);
  conv_padded(r.D, U, K, w, r.aU);
  {
    const T* __restrict a = r.aU;
    const T* __restrict D = r.D + p;
    const T* __restrict Ei = E + p;
    T* __restrict pu = r.pU;
    T* __restrict S = r.S;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) {
      const T v = fast_tanh(U.pw * relu(a[j]) + U.pb);
      pu[j] = v;
      const T s = Ei[j] + v;
      S[j] = s;
      const T df = s - O[j];
      acc_u[j] += df * df;
      acc_p[j] += D[j] * D[j];
    }
  }
}

// Backward of hrow_forward.  gS, gD: gradients of S and D (w each; gS is overwritten); gEp, gDp:
// padded scratch (w + 2p); gO, ga: w scratch; zero: w zeros; cons as in rows_backward.  Writes the
// gradient of the image row into gx.
template <typename T>
void hrow_backward(const HRow<T>& r, int64_t W, const int64_t* idx, int64_t p, int64_t K, const Lifter<T>& P,
                   const Lifter<T>& U, const T* __restrict gS, const T* __restrict gD, T au, T ap, bool cons,
                   const T* __restrict zero, T* __restrict gEp, T* __restrict gDp, T* __restrict gO,
                   T* __restrict ga, const GradSlots<T>& gP, const GradSlots<T>& gU, T* __restrict gx) {
  const int64_t w = (W + 1) / 2, half = W / 2;
  const T* __restrict E = r.E;
  const T* __restrict D = r.D;
  // O, S and the D of the constraint term enter the constraint terms only
  const T* __restrict O = cons ? r.O : zero;
  for (int64_t q = 0; q < p; ++q) gEp[q] = gEp[p + w + q] = gDp[q] = gDp[p + w + q] = T(0);
  {
    const T* __restrict Di = cons ? D + p : zero;
    T* __restrict gd = gDp + p;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) gd[j] = gD[j] + ap * Di[j];
  }
  {  // update branch
    const T* __restrict S = cons ? r.S : zero;
    const T* __restrict pu = r.pU;
    const T* __restrict a = r.aU;
    T* __restrict ge = gEp + p;
    const T upw = U.pw;
    T* __restrict Ab = gU.bias();
    T* __restrict Aw = gU.pw();
    T* __restrict Ac = gU.pb();
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) {
      const T df = S[j] - O[j];
      const T gsv = gS[j] + au * df;
      ge[j] = gsv;
      gO[j] = -au * df;
      const T gz = gsv * (T(1) - pu[j] * pu[j]);
      Aw[j] += gz * relu(a[j]);
      Ac[j] += gz;
      const T g = relu_grad(a[j], gz * upw);
      ga[j] = g;
      Ab[j] += g;
    }
    for (int64_t k = 0; k < K; ++k) {
      const T tk = U.taps[k];
      T* __restrict At = gU.tap(k);
      const T* __restrict Dk = D + k;
      T* __restrict gk = gDp + k;
      for (int64_t j = 0; j < w; ++j) At[j] += ga[j] * Dk[j];
      for (int64_t j = 0; j < w; ++j) gk[j] += tk * ga[j];
    }
    fold_edges(gDp, idx, w, p);
  }
  {  // predict branch
    const T* __restrict pp = r.pP;
    const T* __restrict a = r.aP;
    const T* __restrict gd = gDp + p;
    const T ppw = P.pw;
    T* __restrict Ab = gP.bias();
    T* __restrict Aw = gP.pw();
    T* __restrict Ac = gP.pb();
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) {
      gO[j] += gd[j];
      const T gz = -gd[j] * (T(1) - pp[j] * pp[j]);
      Aw[j] += gz * relu(a[j]);
      Ac[j] += gz;
      const T g = relu_grad(a[j], gz * ppw);
      ga[j] = g;
      Ab[j] += g;
    }
    for (int64_t k = 0; k < K; ++k) {
      const T tk = P.taps[k];
      T* __restrict At = gP.tap(k);
      const T* __restrict Ek = E + k;
      T* __restrict gk = gEp + k;
      for (int64_t j = 0; j < w; ++j) At[j] += ga[j] * Ek[j];
      for (int64_t j = 0; j < w; ++j) gk[j] += tk * ga[j];
    }
    fold_edges(gEp, idx, w, p);
  }
  const T* __restrict ge = gEp + p;
  for (int64_t j = 0; j < half; ++j) {
    gx[2 * j] = ge[j];
    gx[2 * j + 1] = gO[j];
  }
  if (W % 2) gx[W - 1] = ge[w - 1] + gO[w - 1];
}

// -------------------------------------------------------------------------------- inverse steps
// Inverse of one learned lifting step (LiftUpPool; liftpool.functional.unlift_1d):
//
//   e = s - U(d),   o = d + P(e),   then e and o interleaved back (sample 2i = e_i, 2i + 1 = o_i),
//
// the o of the last pair dropped when the axis has an odd length M (the forward extended it).
// Same lifters F, padding tables and branch-free loops as the forward steps above.

// Pre-activations and activations of U and P of one inverse step (row stride istride; 0 = one reused
// row when nothing is kept for backward).
template <typename T>
struct InvBufs {
  T* aU;
  T* vU;
  T* aP;
  T* vP;
  int64_t istride;
};

// Gradient of one lifter output F(v) = tanh(pw * relu(a) + pb) for the upstream gradient `gup` times
// `sign` (one row of `width` lanes): accumulates the per-lane parameter sums of bias, pw, pb and
// writes the gradient of the pre-activation a into ga.
template <typename T>
inline void lifter_grad_row(const T* __restrict gup, T sign, const T* __restrict a, const T* __restrict v, T pw,
                            int64_t width, const GradSlots<T>& gs, T* __restrict ga) {
  T* __restrict Ab = gs.bias();
  T* __restrict Aw = gs.pw();
  T* __restrict Ac = gs.pb();
#pragma omp simd
  for (int64_t j = 0; j < width; ++j) {
    const T gz = sign * gup[j] * (T(1) - v[j] * v[j]);
    Aw[j] += gz * relu(a[j]);
    Ac[j] += gz;
    const T g = relu_grad(a[j], gz * pw);
    ga[j] = g;
    Ab[j] += g;
  }
}

// Source M rows (row stride ldd, written here): row 2i = e_i, row 2i + 1 = o_i; the pairs s_i, d_i are
// rows of `width` lanes with row stride lds.  otail (width) takes the dropped o of an odd M.
template <typename T>
void rows_inverse(const T* s, const T* d, int64_t lds, int64_t M, int64_t width, const int64_t* idx, int64_t p,
                  int64_t K, const Lifter<T>& P, const Lifter<T>& U, const T* zero_row, const T** ptr,
                  const InvBufs<T>& b, T* dst, int64_t ldd, T* otail) {
  const int64_t n = (M + 1) / 2;
  for (int64_t q = 0; q < n + 2 * p; ++q) ptr[q] = idx[q] < 0 ? zero_row : d + idx[q] * lds;
  for (int64_t i = 0; i < n; ++i) {
    T* __restrict a = b.aU + i * b.istride;
    conv_rows(ptr + i, U, K, width, a);
    T* __restrict v = b.vU + i * b.istride;
    const T* __restrict si = s + i * lds;
    T* __restrict e = dst + 2 * i * ldd;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) {
      const T u = fast_tanh(U.pw * relu(a[j]) + U.pb);
      v[j] = u;
      e[j] = si[j] - u;
    }
  }
  for (int64_t q = 0; q < n + 2 * p; ++q) ptr[q] = idx[q] < 0 ? zero_row : dst + 2 * idx[q] * ldd;
  for (int64_t i = 0; i < n; ++i) {
    T* __restrict a = b.aP + i * b.istride;
    conv_rows(ptr + i, P, K, width, a);
    T* __restrict v = b.vP + i * b.istride;
    const T* __restrict di = d + i * lds;
    T* __restrict o = 2 * i + 1 < M ? dst + (2 * i + 1) * ldd : otail;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) {
      const T u = fast_tanh(P.pw * relu(a[j]) + P.pb);
      v[j] = u;
      o[j] = di[j] + u;
    }
  }
}

// Backward of rows_inverse (b must hold the saved rows, istride = width; dst the forward's rows).
// gdst: gradient of the M source rows (row stride ldg).  Writes the gradients of s and d into gs and gd
// (n rows of `width`, row stride ldo).  ge: n x width scratch (dense); ga, dump_row: width scratch.
template <typename T>
void rows_inverse_backward(const T* d, int64_t lds, int64_t M, int64_t width, const int64_t* idx, int64_t p, int64_t K,
                           const Lifter<T>& P, const Lifter<T>& U, const T* zero_row, T* dump_row, const T** ptr,
                           T** gptr, const InvBufs<T>& b, const T* dst, int64_t ldd, const T* gdst, int64_t ldg,
                           T* gs, T* gd, int64_t ldo, T* ge, T* ga, const GradSlots<T>& gP, const GradSlots<T>& gU) {
  const int64_t n = (M + 1) / 2;
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict e_in = gdst + 2 * i * ldg;
    T* __restrict g = ge + i * width;
    T* __restrict gdi = gd + i * ldo;
    for (int64_t j = 0; j < width; ++j) g[j] = e_in[j];
    if (2 * i + 1 < M) {
      const T* __restrict o_in = gdst + (2 * i + 1) * ldg;
      for (int64_t j = 0; j < width; ++j) gdi[j] = o_in[j];
    } else {
      std::fill(gdi, gdi + width, T(0));
    }
  }
  // predict: o = d + P(e), upstream gradient go.  The dropped o of an odd M gets a zero upstream gradient
  // and still runs (as in the eager and literal paths, which crop after the step): 0 times a non-finite
  // derivative is NaN there too
  for (int64_t q = 0; q < n + 2 * p; ++q) {
    ptr[q] = idx[q] < 0 ? zero_row : dst + 2 * idx[q] * ldd;
    gptr[q] = idx[q] < 0 ? dump_row : ge + idx[q] * width;
  }
  for (int64_t i = 0; i < n; ++i) {
    const T* go = 2 * i + 1 < M ? gdst + (2 * i + 1) * ldg : zero_row;
    lifter_grad_row(go, T(1), b.aP + i * width, b.vP + i * width, P.pw, width, gP, ga);
    for (int64_t k = 0; k < K; ++k) {
      const T tk = P.taps[k];
      const T* __restrict e = ptr[i + k];
      T* __restrict At = gP.tap(k);
      T* __restrict gp = gptr[i + k];
      for (int64_t j = 0; j < width; ++j) {
        At[j] += ga[j] * e[j];
        gp[j] += tk * ga[j];
      }
    }
  }
  // update: e = s - U(d), so ds = de and U's upstream gradient is -de
  for (int64_t q = 0; q < n + 2 * p; ++q) {
    ptr[q] = idx[q] < 0 ? zero_row : d + idx[q] * lds;
    gptr[q] = idx[q] < 0 ? dump_row : gd + idx[q] * ldo;
  }
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict g = ge + i * width;
    T* __restrict gsi = gs + i * ldo;
    for (int64_t j = 0; j < width; ++j) gsi[j] = g[j];
    lifter_grad_row(g, T(-1), b.aU + i * width, b.vU + i * width, U.pw, width, gU, ga);
    for (int64_t k = 0; k < K; ++k) {
      const T tk = U.taps[k];
      const T* __restrict dd = ptr[i + k];
      T* __restrict At = gU.tap(k);
      T* __restrict gp = gptr[i + k];
      for (int64_t j = 0; j < width; ++j) {
        At[j] += ga[j] * dd[j];
        gp[j] += tk * ga[j];
      }
    }
  }
}

// Inverse horizontal step of one image row (contiguous axis): S, D (w samples each) -> x (W samples).
// Dp, Ep: padded buffers (w + 2p); aU, vU, aP, vP, O: w samples.
template <typename T>
struct HInv {
  T* Dp;
  T* Ep;
  T* aU;
  T* vU;
  T* aP;
  T* vP;
  T* O;
};

template <typename T>
void hrow_inverse(const T* __restrict S, const T* __restrict D, int64_t W, const int64_t* idx, int64_t p, int64_t K,
                  const Lifter<T>& P, const Lifter<T>& U, const HInv<T>& r, T* __restrict x) {
  const int64_t w = (W + 1) / 2, half = W / 2;
  T* __restrict Dp = r.Dp;
  T* __restrict Ep = r.Ep;
  std::copy(D, D + w, Dp + p);
  fill_edges(Dp, idx, w, p);
  conv_padded(Dp, U, K, w, r.aU);
  {
    const T* __restrict a = r.aU;
    T* __restrict v = r.vU;
    T* __restrict E = Ep + p;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) {
      const T u = fast_tanh(U.pw * relu(a[j]) + U.pb);
      v[j] = u;
      E[j] = S[j] - u;
    }
  }
  fill_edges(Ep, idx, w, p);
  conv_padded(Ep, P, K, w, r.aP);
  {
    const T* __restrict a = r.aP;
    T* __restrict v = r.vP;
    T* __restrict O = r.O;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) {
      const T u = fast_tanh(P.pw * relu(a[j]) + P.pb);
      v[j] = u;
      O[j] = D[j] + u;
    }
  }
  const T* __restrict E = Ep + p;
  const T* __restrict O = r.O;
  for (int64_t j = 0; j < half; ++j) {
    x[2 * j] = E[j];
    x[2 * j + 1] = O[j];
  }
  if (W % 2) x[W - 1] = E[w - 1];
}

// Backward of hrow_inverse (r holds the row's saved buffers).  gx: gradient of the W samples; writes the
// gradients of S and D (w each).  gEp, gDp: padded scratch (w + 2p); ga: w scratch.
template <typename T>
void hrow_inverse_backward(const HInv<T>& r, int64_t W, const int64_t* idx, int64_t p, int64_t K, const Lifter<T>& P,
                           const Lifter<T>& U, const T* __restrict gx, T* __restrict gEp, T* __restrict gDp,
                           T* __restrict ga, const GradSlots<T>& gP, const GradSlots<T>& gU, T* __restrict gS,
                           T* __restrict gD) {
  const int64_t w = (W + 1) / 2, half = W / 2;
  for (int64_t q = 0; q < p; ++q) gEp[q] = gEp[p + w + q] = gDp[q] = gDp[p + w + q] = T(0);
  T* __restrict ge = gEp + p;
  T* __restrict gd = gDp + p;
  for (int64_t j = 0; j < half; ++j) {
    ge[j] = gx[2 * j];
    gd[j] = gx[2 * j + 1];  // o = d + P(e): dd = do
  }
  if (W % 2) {
    ge[w - 1] = gx[W - 1];
    gd[w - 1] = T(0);
  }
  // predict: upstream do (= gd interior before the update branch adds to it)
  lifter_grad_row(gd, T(1), r.aP, r.vP, P.pw, w, gP, ga);
  for (int64_t k = 0; k < K; ++k) {
    const T tk = P.taps[k];
    T* __restrict At = gP.tap(k);
    const T* __restrict Ek = r.Ep + k;
    T* __restrict gk = gEp + k;
    for (int64_t j = 0; j < w; ++j) At[j] += ga[j] * Ek[j];
    for (int64_t j = 0; j < w; ++j) gk[j] += tk * ga[j];
  }
  fold_edges(gEp, idx, w, p);
  // update: e = s - U(d)
  for (int64_t j = 0; j < w; ++j) gS[j] = ge[j];
  lifter_grad_row(ge, T(-1), r.aU, r.vU, U.pw, w, gU, ga);
  for (int64_t k = 0; k < K; ++k) {
    const T tk = U.taps[k];
    T* __restrict At = gU.tap(k);
    const T* __restrict Dk = r.Dp + k;
    T* __restrict gk = gDp + k;
    for (int64_t j = 0; j < w; ++j) At[j] += ga[j] * Dk[j];
    for (int64_t j = 0; j < w; ++j) gk[j] += tk * ga[j];
  }
  fold_edges(gDp, idx, w, p);
  for (int64_t j = 0; j < w; ++j) gD[j] = gd[j];
}

}  // namespace liftpool
