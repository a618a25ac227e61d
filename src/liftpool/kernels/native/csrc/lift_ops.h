// Entry points of the native kernels: registered as the liftpool:: ops in ops.cpp (no Python) and
// bound to Python for the eager fast path in module.cpp.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

namespace liftpool {

// LiftDownPool2d (lift_down2d.cpp)
std::vector<at::Tensor> down2d_forward(const at::Tensor& x, const at::Tensor& params, int64_t padding,
                                       int64_t band_mask, double scale, bool constraints, bool details,
                                       int64_t layout);
std::vector<at::Tensor> down2d_backward(const at::Tensor& x, const at::Tensor& params,
                                        const std::optional<at::Tensor>& grad_out,
                                        const std::optional<at::Tensor>& grad_details, const at::Tensor& grad_cons,
                                        int64_t padding, int64_t band_mask, double scale, int64_t layout);
std::vector<at::Tensor> down2d_forward_list(const at::Tensor& x, const std::vector<at::Tensor>& params, int64_t padding,
                                            int64_t band_mask, double scale, bool constraints, bool details,
                                            int64_t layout);
std::vector<at::Tensor> down2d_backward_list(const at::Tensor& x, const std::vector<at::Tensor>& params,
                                             const std::optional<at::Tensor>& grad_out,
                                             const std::optional<at::Tensor>& grad_details,
                                             const at::Tensor& grad_cons, int64_t padding, int64_t band_mask,
                                             double scale, int64_t layout);
at::Tensor tanh_float(const at::Tensor& v);

// LiftUpPool2d (lift_up2d.cpp): bands = [LL, LH, HL, HH], each (N, C, h, w); returns x (N, C, H, W).
at::Tensor up2d_forward_list(const std::vector<at::Tensor>& bands, const std::vector<at::Tensor>& params, int64_t H,
                             int64_t W, int64_t padding, int64_t layout);
// Returns [grad LL, grad LH, grad HL, grad HH, grad of every tensor of params].
std::vector<at::Tensor> up2d_backward_list(const std::vector<at::Tensor>& bands, const std::vector<at::Tensor>& params,
                                           const at::Tensor& grad_x, int64_t padding, int64_t layout);

// LiftDownPool1d / LiftUpPool1d (lift_1d.cpp): x (N, C, L); bands [L, H] each (N, C, ceil(L / 2)).
std::vector<at::Tensor> down1d_forward_list(const at::Tensor& x, const std::vector<at::Tensor>& params, int64_t padding,
                                            int64_t band_mask, double scale, bool constraints, bool details);
std::vector<at::Tensor> down1d_backward_list(const at::Tensor& x, const std::vector<at::Tensor>& params,
                                             const std::optional<at::Tensor>& grad_out,
                                             const std::optional<at::Tensor>& grad_details,
                                             const at::Tensor& grad_cons, int64_t padding, int64_t band_mask,
                                             double scale);
at::Tensor up1d_forward_list(const std::vector<at::Tensor>& bands, const std::vector<at::Tensor>& params, int64_t L,
                             int64_t padding);
std::vector<at::Tensor> up1d_backward_list(const std::vector<at::Tensor>& bands, const std::vector<at::Tensor>& params,
                                           const at::Tensor& grad_x, int64_t padding);

// LiftDownPool3d / LiftUpPool3d (lift_3d.cpp): x (N, C, D, H, W); bands in liftpool.constants.band_names(3)
// order, each (N, C, ceil(D / 2), ceil(H / 2), ceil(W / 2)); details (7, N, C, d, h, w).
std::vector<at::Tensor> down3d_forward_list(const at::Tensor& x, const std::vector<at::Tensor>& params, int64_t padding,
                                            int64_t band_mask, double scale, bool constraints, bool details);
std::vector<at::Tensor> down3d_backward_list(const at::Tensor& x, const std::vector<at::Tensor>& params,
                                             const std::optional<at::Tensor>& grad_out,
                                             const std::optional<at::Tensor>& grad_details,
                                             const at::Tensor& grad_cons, int64_t padding, int64_t band_mask,
                                             double scale);
at::Tensor up3d_forward_list(const std::vector<at::Tensor>& bands, const std::vector<at::Tensor>& params, int64_t D,
                             int64_t H, int64_t W, int64_t padding);
std::vector<at::Tensor> up3d_backward_list(const std::vector<at::Tensor>& bands, const std::vector<at::Tensor>& params,
                                           const at::Tensor& grad_x, int64_t padding);

}  // namespace liftpool
