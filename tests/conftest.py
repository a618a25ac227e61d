import os
import random

import numpy as np
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    yield


# ------------------------------------------------------------------ device / dtype fixtures
# (the pattern of kornia's test base): every test taking ``device`` runs on the CPU and, on a
# machine with CUDA, once more on the GPU; ``dtype`` runs it in float32 and float64, and
# ``tol`` is the relative error an exact-in-real-arithmetic identity may show in that dtype.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = {"float32": torch.float32, "float64": torch.float64}
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(params=list(DTYPES.values()), ids=list(DTYPES))
def dtype(request):
    return request.param


@pytest.fixture
def tol(dtype):
    return TOLERANCE[dtype]
