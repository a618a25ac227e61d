// Python bindings of the native kernels for the eager fast path (the Python extension module; it
// links the ops library built from ops.cpp and the kernels, which owns the code).
#include <torch/extension.h>

#include "lift_ops.h"

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
  m.def("up2d_forward_list", &liftpool::up2d_forward_list,
        "fused LiftUpPool2d forward: bands [LL, LH, HL, HH] -> x of size (H, W)", py::arg("bands"), py::arg("params"),
        py::arg("H"), py::arg("W"), py::arg("padding"), py::arg("layout"), py::call_guard<py::gil_scoped_release>());
  m.def("up2d_backward_list", &liftpool::up2d_backward_list,
        "fused LiftUpPool2d backward (recomputes per item): [grad per band, grad per parameter tensor]",
        py::arg("bands"), py::arg("params"), py::arg("grad_x"), py::arg("padding"), py::arg("layout"),
        py::call_guard<py::gil_scoped_release>());
  m.def("down1d_forward_list", &liftpool::down1d_forward_list, "fused LiftDownPool1d forward", py::arg("x"),
        py::arg("params"), py::arg("padding"), py::arg("bands"), py::arg("scale"), py::arg("constraints"),
        py::arg("details"), py::call_guard<py::gil_scoped_release>());
  m.def("down1d_backward_list", &liftpool::down1d_backward_list, "fused LiftDownPool1d backward", py::arg("x"),
        py::arg("params"), py::arg("grad_out"), py::arg("grad_details"), py::arg("grad_cons"), py::arg("padding"),
        py::arg("bands"), py::arg("scale"), py::call_guard<py::gil_scoped_release>());
  m.def("up1d_forward_list", &liftpool::up1d_forward_list, "fused LiftUpPool1d forward: bands [L, H] -> x",
        py::arg("bands"), py::arg("params"), py::arg("L"), py::arg("padding"), py::call_guard<py::gil_scoped_release>());
  m.def("up1d_backward_list", &liftpool::up1d_backward_list, "fused LiftUpPool1d backward", py::arg("bands"),
        py::arg("params"), py::arg("grad_x"), py::arg("padding"), py::call_guard<py::gil_scoped_release>());
  m.def("down3d_forward_list", &liftpool::down3d_forward_list, "fused LiftDownPool3d forward", py::arg("x"),
        py::arg("params"), py::arg("padding"), py::arg("bands"), py::arg("scale"), py::arg("constraints"),
        py::arg("details"), py::call_guard<py::gil_scoped_release>());
  m.def("down3d_backward_list", &liftpool::down3d_backward_list, "fused LiftDownPool3d backward", py::arg("x"),
        py::arg("params"), py::arg("grad_out"), py::arg("grad_details"), py::arg("grad_cons"), py::arg("padding"),
        py::arg("bands"), py::arg("scale"), py::call_guard<py::gil_scoped_release>());
  m.def("up3d_forward_list", &liftpool::up3d_forward_list, "fused LiftUpPool3d forward: 8 bands -> x",
        py::arg("bands"), py::arg("params"), py::arg("D"), py::arg("H"), py::arg("W"), py::arg("padding"),
        py::call_guard<py::gil_scoped_release>());
  m.def("up3d_backward_list", &liftpool::up3d_backward_list, "fused LiftUpPool3d backward", py::arg("bands"),
        py::arg("params"), py::arg("grad_x"), py::arg("padding"), py::call_guard<py::gil_scoped_release>());
  m.def("tanh_float", &liftpool::tanh_float, "the kernel's float32 tanh approximation", py::arg("v"));
}
