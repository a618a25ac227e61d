#!/usr/bin/env bash
# Device checks for a machine with a CUDA GPU, under ~8 minutes: the layer tests on the `device`
# fixture's cuda parameter (tests/conftest.py), the native-kernel fallback on CUDA tensors, and
# `liftpool bench --device cuda` (layer + network sections). Writes gpu-check/ (log + bench.md).
# Usage (repository root, after `make venv` or with liftpool installed):  bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
"$PY" - <<'PYEOF' | tee "$OUT/device.txt"
import torch
assert torch.cuda.is_available(), "no CUDA device: this script is for a GPU machine"
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))
PYEOF
# 1. layer tests (device fixture = cpu and cuda), dispatch tests; ~2-4 min
timeout 300 "$PY" -m pytest -q -x tests/test_layers.py tests/test_backend.py tests/test_fast_path.py \
    2>&1 | tee "$OUT/tests.log"
# 2. CUDA forward/backward of the layer family against the CPU result (eager kernel on the GPU)
timeout 120 "$PY" - <<'PYEOF' 2>&1 | tee "$OUT/parity.log"
import torch
from liftpool import LiftDownPool1d, LiftDownPool2d, LiftDownPool3d, LiftUpPool2d, kernels
torch.manual_seed(0)
for cls, shape in ((LiftDownPool1d, (4, 8, 37)), (LiftDownPool2d, (4, 8, 33, 30)), (LiftDownPool3d, (2, 8, 9, 10, 7))):
    cpu = cls(8, dtype=torch.float64)
    gpu = cls(8, dtype=torch.float64, device="cuda")
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(*shape, dtype=torch.float64)
    assert kernels.selected(x.cuda(), gpu.transforms, cls.spatial_dims) == "eager"
    xc, xg = x.clone().requires_grad_(), x.cuda().requires_grad_()
    yc, yg = cpu(xc), gpu(xg)
    (yc.sum() + cpu.lifting_loss()).backward()
    (yg.sum() + gpu.lifting_loss()).backward()
    err = max((yc - yg.cpu()).abs().max().item(), (xc.grad - xg.grad.cpu()).abs().max().item())
    print(f"{cls.__name__} {shape}: max |cpu - cuda| = {err:.2e}")
    assert err < 1e-10
down = LiftDownPool2d(8, bands="LL", return_details=True, device="cuda", dtype=torch.float64)
x = torch.randn(2, 8, 31, 17, device="cuda", dtype=torch.float64)
y, d = down(x)
print("LiftUpPool2d round trip on cuda:", (LiftUpPool2d(down)(y, d) - x).abs().max().item())
PYEOF
# 3. benchmark on the GPU (eager kernel), ~3 min
timeout 240 "$PY" -m liftpool.cli bench --quick --device cuda --sections layer net --threads 1 --out "$OUT" \
    2>&1 | tail -n 40 | tee "$OUT/bench.log"
echo "gpu_check: OK, results in $OUT/"
