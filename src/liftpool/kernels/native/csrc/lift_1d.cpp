// Fused CPU LiftDownPool1d / LiftUpPool1d with learned P/U: forward and backward (liftpool.kernels.native).
//
// 1D lifting is the horizontal step of the 2D kernels alone (hrow_* / hrow_inverse_* of lift_steps.h) on
// every (n, c) row of x (N, C, L).  A work item is a block of rows of one channel (a fixed number of
// images chosen from the shape only), so the per-item setup and the lane reduction of the parameter
// gradients are paid once per block; the result is the same bits for any thread count.
#include "lift_common.h"
#include "lift_ops.h"

namespace liftpool {
namespace {

Geometry line_geometry(int64_t N, int64_t C, int64_t L, at::ScalarType dtype, bool cpu, const at::Tensor& params,
                       int64_t padding) {
  TORCH_CHECK(params.size(0) == 1, "liftpool native: 1D lifting has one (P, U) pair, got ", params.size(0));
  Geometry g = geometry_from({N, C, 1, L}, dtype, cpu, params, padding);
  return g;
}

// Rows per item: about kLineSamples samples, at most the batch.
constexpr int64_t kLineSamples = 16384;
int64_t rows_per_item(const Geometry& g) {
  return std::max<int64_t>(1, std::min<int64_t>(g.N, (kLineSamples + g.W - 1) / g.W));
}

template <typename T>
struct LineWork {
  Geometry g;
  int64_t wp;
  std::vector<int64_t> idx;
  std::vector<T> E, O, aP, pP, D, aU, pU, S, gS, gD, gEp, gDp, gO, ga, xrow, zero;
  Accumulators<T> acc;
  LineWork(const Geometry& geo) : g(geo) {
    const int64_t w = g.w, p = g.p;
    wp = w + 2 * p;
    pad_table(idx, w, p, g.mode);
    for (auto* v : {&E, &D, &gEp, &gDp}) v->resize(static_cast<size_t>(wp));
    for (auto* v : {&O, &aP, &pP, &aU, &pU, &S, &gS, &gD, &gO, &ga}) v->resize(static_cast<size_t>(w));
    xrow.resize(static_cast<size_t>(g.W));
    zero.assign(static_cast<size_t>(w), T(0));
    acc.init(g.nparam(), w, g.K);
  }
  HRow<T> hrow() {
    return HRow<T>{E.data(), O.data(), aP.data(), pP.data(), D.data(), aU.data(), pU.data(), S.data()};
  }
  HInv<T> hinv() { return HInv<T>{D.data(), E.data(), aU.data(), pU.data(), aP.data(), pP.data(), O.data()}; }
};

}  // namespace

std::vector<at::Tensor> down1d_forward_list(const at::Tensor& x_in, const std::vector<at::Tensor>& params_in,
                                            int64_t padding, int64_t band_mask, double scale, bool constraints,
                                            bool details) {
  TORCH_CHECK(x_in.dim() == 3, "liftpool native: x must be (N, C, L), got shape ", x_in.sizes());
  const at::Tensor params = pack_params(params_in, x_in);
  const Geometry g = line_geometry(x_in.size(0), x_in.size(1), x_in.size(2), x_in.scalar_type(),
                                   x_in.device().is_cpu(), params, padding);
  TORCH_CHECK(band_mask >= 1 && band_mask <= 3, "liftpool native: 1D band mask must be 1..3, got ", band_mask);
  const at::Tensor x = x_in.contiguous();
  const int64_t L = g.W, l = g.w, B = rows_per_item(g), nb = (g.N + B - 1) / B, items = g.C * nb;
  at::Tensor out = at::empty({g.N, g.C, l}, x.options());
  at::Tensor det = details ? at::empty({g.N, g.C, l}, x.options()) : at::empty({0}, x.options());
  at::Tensor part = at::zeros({items, 2}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "liftpool_down1d_forward", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    const T* pp = params.data_ptr<T>();
    T* op = out.data_ptr<T>();
    T* dp = details ? det.data_ptr<T>() : nullptr;
    double* sp = part.data_ptr<double>();
    const bool low = band_mask & 1, high = band_mask & 2;
    const T s = static_cast<T>(scale);
    at::parallel_for(0, items, 1, [&](int64_t b0, int64_t b1) {
      LineWork<T> ws(g);
      for (int64_t it = b0; it < b1; ++it) {
        const int64_t c = it / nb, n0 = (it % nb) * B, n1 = std::min(g.N, n0 + B);
        const Lifter<T> P = lifter_of(pp, g, 0, 0, c), U = lifter_of(pp, g, 0, 1, c);
        ws.acc.zero();
        for (int64_t n = n0; n < n1; ++n) {
          const int64_t row = n * g.C + c;
          hrow_forward(xp + row * L, L, ws.idx.data(), g.p, g.K, P, U, ws.hrow(), ws.acc.cons(0), ws.acc.cons(1));
          const T* __restrict S = ws.S.data();
          const T* __restrict D = ws.D.data() + g.p;
          T* __restrict o = op + row * l;
          if (low && high) {
            for (int64_t j = 0; j < l; ++j) o[j] = S[j] + D[j];
          } else {
            const T* src = low ? S : D;
            for (int64_t j = 0; j < l; ++j) o[j] = src[j];
          }
          if (scale != 1.0)
            for (int64_t j = 0; j < l; ++j) o[j] *= s;
          if (dp) std::copy(D, D + l, dp + row * l);
        }
        if (constraints) {
          sp[it * 2] = ws.acc.sum(ws.acc.nslot - 4);
          sp[it * 2 + 1] = ws.acc.sum(ws.acc.nslot - 3);
        }
      }
    });
  });
  at::Tensor cons = at::zeros({2}, x.options());
  if (constraints) {
    const double* sp = part.data_ptr<double>();
    double su = 0, sq = 0;
    for (int64_t it = 0; it < items; ++it) {
      su += sp[it * 2];
      sq += sp[it * 2 + 1];
    }
    const double n = static_cast<double>(std::max<int64_t>(g.N * g.C * l, 1));
    cons = at::tensor({su / n, sq / n}, part.options()).to(x.scalar_type());
  }
  return {out, det, cons};
}

std::vector<at::Tensor> down1d_backward_list(const at::Tensor& x_in, const std::vector<at::Tensor>& params_in,
                                             const std::optional<at::Tensor>& grad_out,
                                             const std::optional<at::Tensor>& grad_details,
                                             const at::Tensor& grad_cons, int64_t padding, int64_t band_mask,
                                             double scale) {
  TORCH_CHECK(x_in.dim() == 3, "liftpool native: x must be (N, C, L), got shape ", x_in.sizes());
  const at::Tensor params = pack_params(params_in, x_in);
  const Geometry g = line_geometry(x_in.size(0), x_in.size(1), x_in.size(2), x_in.scalar_type(),
                                   x_in.device().is_cpu(), params, padding);
  TORCH_CHECK(band_mask >= 1 && band_mask <= 3, "liftpool native: 1D band mask must be 1..3, got ", band_mask);
  const at::Tensor x = x_in.contiguous();
  const int64_t L = g.W, l = g.w, B = rows_per_item(g), nb = (g.N + B - 1) / B, items = g.C * nb;
  const at::Tensor go = incoming_grad(grad_out, {g.N, g.C, l}, x, "grad_out", false);
  const at::Tensor gdet = incoming_grad(grad_details, {g.N, g.C, l}, x, "grad_details", true);
  const ConsGrad gc = cons_grad(grad_cons);
  const double n = mean_count(g.N * g.C * l);
  const double au = 2 * gc.u / n, ap = 2 * gc.p / n;
  at::Tensor gx = at::empty_like(x);
  const int64_t np = g.nparam();
  at::Tensor part = at::empty({items, np}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "liftpool_down1d_backward", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    const T* pp = params.data_ptr<T>();
    const T* gop = go.defined() ? go.data_ptr<T>() : nullptr;
    const T* gdp = gdet.defined() ? gdet.data_ptr<T>() : nullptr;
    T* gxp = gx.data_ptr<T>();
    double* sp = part.data_ptr<double>();
    const T s = static_cast<T>(scale);
    const bool low = gop && (band_mask & 1), high = gop && (band_mask & 2);
    at::parallel_for(0, items, 1, [&](int64_t b0, int64_t b1) {
      LineWork<T> ws(g);
      for (int64_t it = b0; it < b1; ++it) {
        const int64_t c = it / nb, n0 = (it % nb) * B, n1 = std::min(g.N, n0 + B);
        const Lifter<T> P = lifter_of(pp, g, 0, 0, c), U = lifter_of(pp, g, 0, 1, c);
        ws.acc.zero();
        for (int64_t nn = n0; nn < n1; ++nn) {
          const int64_t row = nn * g.C + c;
          hrow_forward(xp + row * L, L, ws.idx.data(), g.p, g.K, P, U, ws.hrow(), ws.acc.cons(0), ws.acc.cons(1));
          T* __restrict gS = ws.gS.data();
          T* __restrict gD = ws.gD.data();
          for (int64_t j = 0; j < l; ++j) {
            const T gv = gop ? s * gop[row * l + j] : T(0);
            gS[j] = low ? gv : T(0);
            gD[j] = (high ? gv : T(0)) + (gdp ? gdp[row * l + j] : T(0));
          }
          hrow_backward(ws.hrow(), L, ws.idx.data(), g.p, g.K, P, U, gS, gD, static_cast<T>(au), static_cast<T>(ap),
                        gc.present, ws.zero.data(), ws.gEp.data(), ws.gDp.data(), ws.gO.data(), ws.ga.data(), ws.acc.lifter(0, 0),
                        ws.acc.lifter(0, 1), gxp + row * L);
        }
        for (int64_t k = 0; k < np; ++k) sp[it * np + k] = ws.acc.sum(k);
      }
    });
  });
  std::vector<at::Tensor> res = {gx};
  append_param_grads(res, part, params, params_in, [nb](int64_t it) { return it / nb; }, x);
  return res;
}

at::Tensor up1d_forward_list(const std::vector<at::Tensor>& bands_in, const std::vector<at::Tensor>& params_in,
                             int64_t L, int64_t padding) {
  TORCH_CHECK(bands_in.size() == 2, "liftpool native: up1d needs 2 bands (L, H), got ", bands_in.size());
  check_tensor(bands_in[0], "band L");
  check_tensor(bands_in[1], "band H");
  const at::Tensor s_t = bands_in[0].contiguous(), d_t = bands_in[1].contiguous();
  TORCH_CHECK(s_t.dim() == 3 && d_t.sizes() == s_t.sizes() && d_t.scalar_type() == s_t.scalar_type(),
              "liftpool native: bands must be two (N, C, l) tensors of one dtype, got ", s_t.sizes(), " and ",
              d_t.sizes());
  TORCH_CHECK(L >= 1 && (L + 1) / 2 == s_t.size(2), "liftpool native: output length ", L,
              " does not match bands of length ", s_t.size(2));
  const at::Tensor params = pack_params(params_in, s_t);
  const Geometry g = line_geometry(s_t.size(0), s_t.size(1), L, s_t.scalar_type(), s_t.device().is_cpu() &&
                                   d_t.device().is_cpu(), params, padding);
  const int64_t l = g.w, B = rows_per_item(g), nb = (g.N + B - 1) / B, items = g.C * nb;
  at::Tensor x = at::empty({g.N, g.C, L}, s_t.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "liftpool_up1d_forward", [&] {
    using T = scalar_t;
    const T* spp = s_t.data_ptr<T>();
    const T* dpp = d_t.data_ptr<T>();
    const T* pp = params.data_ptr<T>();
    T* xp = x.data_ptr<T>();
    at::parallel_for(0, items, 1, [&](int64_t b0, int64_t b1) {
      LineWork<T> ws(g);
      for (int64_t it = b0; it < b1; ++it) {
        const int64_t c = it / nb, n0 = (it % nb) * B, n1 = std::min(g.N, n0 + B);
        const Lifter<T> P = lifter_of(pp, g, 0, 0, c), U = lifter_of(pp, g, 0, 1, c);
        for (int64_t nn = n0; nn < n1; ++nn) {
          const int64_t row = nn * g.C + c;
          hrow_inverse(spp + row * l, dpp + row * l, L, ws.idx.data(), g.p, g.K, P, U, ws.hinv(), xp + row * L);
        }
      }
    });
  });
  return x;
}

std::vector<at::Tensor> up1d_backward_list(const std::vector<at::Tensor>& bands_in,
                                           const std::vector<at::Tensor>& params_in, const at::Tensor& grad_x_in,
                                           int64_t padding) {
  TORCH_CHECK(bands_in.size() == 2, "liftpool native: up1d needs 2 bands (L, H), got ", bands_in.size());
  check_tensor(bands_in[0], "band L");
  check_tensor(bands_in[1], "band H");
  const at::Tensor s_t = bands_in[0].contiguous(), d_t = bands_in[1].contiguous();
  check_tensor(grad_x_in, "grad_x");
  TORCH_CHECK(grad_x_in.dim() == 3 && grad_x_in.size(0) == s_t.size(0) && grad_x_in.size(1) == s_t.size(1),
              "liftpool native: grad_x shape ", grad_x_in.sizes(), " does not match the bands ", s_t.sizes());
  const int64_t L = grad_x_in.size(2);
  TORCH_CHECK((L + 1) / 2 == s_t.size(2), "liftpool native: grad_x length ", L, " does not match bands of length ",
              s_t.size(2));
  const at::Tensor params = pack_params(params_in, s_t);
  const Geometry g = line_geometry(s_t.size(0), s_t.size(1), L, s_t.scalar_type(), s_t.device().is_cpu(), params,
                                   padding);
  const at::Tensor gx = grad_x_in.to(s_t.scalar_type()).contiguous();
  const int64_t l = g.w, B = rows_per_item(g), nb = (g.N + B - 1) / B, items = g.C * nb, np = g.nparam();
  at::Tensor gs = at::empty_like(s_t), gd = at::empty_like(d_t);
  at::Tensor part = at::empty({items, np}, s_t.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(s_t.scalar_type(), "liftpool_up1d_backward", [&] {
    using T = scalar_t;
    const T* spp = s_t.data_ptr<T>();
    const T* dpp = d_t.data_ptr<T>();
    const T* pp = params.data_ptr<T>();
    const T* gxp = gx.data_ptr<T>();
    T* gsp = gs.data_ptr<T>();
    T* gdp = gd.data_ptr<T>();
    double* sp = part.data_ptr<double>();
    at::parallel_for(0, items, 1, [&](int64_t b0, int64_t b1) {
      LineWork<T> ws(g);
      for (int64_t it = b0; it < b1; ++it) {
        const int64_t c = it / nb, n0 = (it % nb) * B, n1 = std::min(g.N, n0 + B);
        const Lifter<T> P = lifter_of(pp, g, 0, 0, c), U = lifter_of(pp, g, 0, 1, c);
        ws.acc.zero();
        for (int64_t nn = n0; nn < n1; ++nn) {
          const int64_t row = nn * g.C + c;
          hrow_inverse(spp + row * l, dpp + row * l, L, ws.idx.data(), g.p, g.K, P, U, ws.hinv(), ws.xrow.data());
          hrow_inverse_backward(ws.hinv(), L, ws.idx.data(), g.p, g.K, P, U, gxp + row * L, ws.gEp.data(),
                                ws.gDp.data(), ws.ga.data(), ws.acc.lifter(0, 0), ws.acc.lifter(0, 1), gsp + row * l,
                                gdp + row * l);
        }
        for (int64_t k = 0; k < np; ++k) sp[it * np + k] = ws.acc.sum(k);
      }
    });
  });
  std::vector<at::Tensor> res = {gs, gd};
  append_param_grads(res, part, params, params_in, [nb](int64_t it) { return it / nb; }, s_t);
  return res;
}

}  // namespace liftpool
