// The liftpool:: operators: schemas and CPU kernels, registered with the PyTorch dispatcher.
//
// This file and the kernels form the ops library, which needs no Python: torch.compile, torch.export and
// an AOTInductor package call these ops by name, and a C++ program that loads the library (dlopen) can
// run such a package without a Python interpreter.  The fake (meta) kernels and the autograd formulas
// live in Python (liftpool/kernels/native/ops.py, named below with set_python_module).
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "lift_ops.h"

namespace liftpool {
namespace {

using Tensor3 = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

Tensor3 as_tuple(std::vector<at::Tensor> r) {
  TORCH_CHECK(r.size() == 3, "liftpool: internal error, a down kernel returned ", r.size(), " tensors");
  return {std::move(r[0]), std::move(r[1]), std::move(r[2])};
}

Tensor3 down2d_op(const at::Tensor& x, at::TensorList params, int64_t padding, int64_t bands, double scale,
                  bool constraints, bool details, int64_t layout) {
  return as_tuple(down2d_forward_list(x, params.vec(), padding, bands, scale, constraints, details, layout));
}

std::vector<at::Tensor> down2d_backward_op(const at::Tensor& x, at::TensorList params,
                                           const std::optional<at::Tensor>& grad_out,
                                           const std::optional<at::Tensor>& grad_details, const at::Tensor& grad_cons,
                                           int64_t padding, int64_t bands, double scale, int64_t layout) {
  return down2d_backward_list(x, params.vec(), grad_out, grad_details, grad_cons, padding, bands, scale, layout);
}

at::Tensor up2d_op(at::TensorList bands, at::TensorList params, int64_t H, int64_t W, int64_t padding,
                   int64_t layout) {
  return up2d_forward_list(bands.vec(), params.vec(), H, W, padding, layout);
}

std::vector<at::Tensor> up2d_backward_op(at::TensorList bands, at::TensorList params, const at::Tensor& grad_x,
                                         int64_t padding, int64_t layout) {
  return up2d_backward_list(bands.vec(), params.vec(), grad_x, padding, layout);
}

Tensor3 down1d_op(const at::Tensor& x, at::TensorList params, int64_t padding, int64_t bands, double scale,
                  bool constraints, bool details) {
  return as_tuple(down1d_forward_list(x, params.vec(), padding, bands, scale, constraints, details));
}

std::vector<at::Tensor> down1d_backward_op(const at::Tensor& x, at::TensorList params,
                                           const std::optional<at::Tensor>& grad_out,
                                           const std::optional<at::Tensor>& grad_details, const at::Tensor& grad_cons,
                                           int64_t padding, int64_t bands, double scale) {
  return down1d_backward_list(x, params.vec(), grad_out, grad_details, grad_cons, padding, bands, scale);
}

at::Tensor up1d_op(at::TensorList bands, at::TensorList params, int64_t L, int64_t padding) {
  return up1d_forward_list(bands.vec(), params.vec(), L, padding);
}

std::vector<at::Tensor> up1d_backward_op(at::TensorList bands, at::TensorList params, const at::Tensor& grad_x,
                                         int64_t padding) {
  return up1d_backward_list(bands.vec(), params.vec(), grad_x, padding);
}

Tensor3 down3d_op(const at::Tensor& x, at::TensorList params, int64_t padding, int64_t bands, double scale,
                  bool constraints, bool details) {
  return as_tuple(down3d_forward_list(x, params.vec(), padding, bands, scale, constraints, details));
}

std::vector<at::Tensor> down3d_backward_op(const at::Tensor& x, at::TensorList params,
                                           const std::optional<at::Tensor>& grad_out,
                                           const std::optional<at::Tensor>& grad_details, const at::Tensor& grad_cons,
                                           int64_t padding, int64_t bands, double scale) {
  return down3d_backward_list(x, params.vec(), grad_out, grad_details, grad_cons, padding, bands, scale);
}

at::Tensor up3d_op(at::TensorList bands, at::TensorList params, int64_t D, int64_t H, int64_t W, int64_t padding) {
  return up3d_forward_list(bands.vec(), params.vec(), D, H, W, padding);
}

std::vector<at::Tensor> up3d_backward_op(at::TensorList bands, at::TensorList params, const at::Tensor& grad_x,
                                         int64_t padding) {
  return up3d_backward_list(bands.vec(), params.vec(), grad_x, padding);
}

}  // namespace
}  // namespace liftpool

// Sizes are SymInt so that torch.export keeps them symbolic (dynamic shapes); the CPU kernels see ints.
TORCH_LIBRARY(liftpool, m) {
  m.set_python_module("liftpool.kernels.native.ops");
  m.def(
      "down2d(Tensor x, Tensor[] params, SymInt padding, SymInt bands, float scale, bool constraints, bool details, "
      "SymInt layout) -> (Tensor, Tensor, Tensor)");
  m.def(
      "down2d_backward(Tensor x, Tensor[] params, Tensor? grad_out, Tensor? grad_details, Tensor grad_cons, "
      "SymInt padding, SymInt bands, float scale, SymInt layout) -> Tensor[]");
  m.def("up2d(Tensor[] bands, Tensor[] params, SymInt H, SymInt W, SymInt padding, SymInt layout) -> Tensor");
  m.def("up2d_backward(Tensor[] bands, Tensor[] params, Tensor grad_x, SymInt padding, SymInt layout) -> Tensor[]");
  m.def(
      "down1d(Tensor x, Tensor[] params, SymInt padding, SymInt bands, float scale, bool constraints, bool details) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "down1d_backward(Tensor x, Tensor[] params, Tensor? grad_out, Tensor? grad_details, Tensor grad_cons, "
      "SymInt padding, SymInt bands, float scale) -> Tensor[]");
  m.def("up1d(Tensor[] bands, Tensor[] params, SymInt L, SymInt padding) -> Tensor");
  m.def("up1d_backward(Tensor[] bands, Tensor[] params, Tensor grad_x, SymInt padding) -> Tensor[]");
  m.def(
      "down3d(Tensor x, Tensor[] params, SymInt padding, SymInt bands, float scale, bool constraints, bool details) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "down3d_backward(Tensor x, Tensor[] params, Tensor? grad_out, Tensor? grad_details, Tensor grad_cons, "
      "SymInt padding, SymInt bands, float scale) -> Tensor[]");
  m.def("up3d(Tensor[] bands, Tensor[] params, SymInt D, SymInt H, SymInt W, SymInt padding) -> Tensor");
  m.def("up3d_backward(Tensor[] bands, Tensor[] params, Tensor grad_x, SymInt padding) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(liftpool, CPU, m) {
  m.impl("down2d", &liftpool::down2d_op);
  m.impl("down2d_backward", &liftpool::down2d_backward_op);
  m.impl("up2d", &liftpool::up2d_op);
  m.impl("up2d_backward", &liftpool::up2d_backward_op);
  m.impl("down1d", &liftpool::down1d_op);
  m.impl("down1d_backward", &liftpool::down1d_backward_op);
  m.impl("up1d", &liftpool::up1d_op);
  m.impl("up1d_backward", &liftpool::up1d_backward_op);
  m.impl("down3d", &liftpool::down3d_op);
  m.impl("down3d_backward", &liftpool::down3d_backward_op);
  m.impl("up3d", &liftpool::up3d_op);
  m.impl("up3d_backward", &liftpool::up3d_backward_op);
}
