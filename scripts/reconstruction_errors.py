"""Worst relative reconstruction error of LiftUpPool(LiftDownPool) over sizes, K, padding, sharing, dims.

    python scripts/reconstruction_errors.py

Prints, per dtype and dimensionality, max |up(down(x)) - x| / max |x| over the same grid the
test suite checks (sizes 1..11 incl. odd and 1xN, K in 1/3/5/7, 4 padding modes, shared and
unshared weights), for contiguous and channels_last inputs.
"""

from __future__ import annotations

import itertools

import torch

from liftpool import LiftDownPool1d, LiftDownPool2d, LiftDownPool3d, LiftUpPool1d, LiftUpPool2d, LiftUpPool3d
from liftpool.constants import band_names

DOWN = {1: LiftDownPool1d, 2: LiftDownPool2d, 3: LiftDownPool3d}
UP = {1: LiftUpPool1d, 2: LiftUpPool2d, 3: LiftUpPool3d}
SIZES = {1: [(1,), (2,), (3,), (8,), (11,)], 2: [(1, 1), (2, 2), (7, 5), (1, 9), (6, 1), (4, 6), (32, 31)],
         3: [(1, 1, 1), (2, 3, 5), (4, 4, 3)]}
CL = {2: torch.channels_last, 3: torch.channels_last_3d}


def main() -> None:
    torch.manual_seed(0)
    print("| dtype | dims | cases | worst relative error |")
    print("|---|---|---|---|")
    for dtype in (torch.float64, torch.float32):
        for dims in (1, 2, 3):
            worst, n = 0.0, 0
            for size, k, mode, share in itertools.product(
                SIZES[dims], (1, 3, 5, 7), ("reflect", "replicate", "zeros", "circular"), (True, False)
            ):
                down = DOWN[dims](
                    4,
                    k,
                    padding_mode=mode,
                    share_weights=share,
                    bands=band_names(dims)[0],
                    return_details=True,
                    dtype=dtype,
                )
                x = torch.randn(2, 4, *size, dtype=dtype)
                inputs = [x] + ([x.contiguous(memory_format=CL[dims])] if dims in CL else [])
                for inp in inputs:
                    with torch.no_grad():
                        y, det = down(inp)
                        xr = UP[dims](down)(y, det)
                    worst = max(worst, float((xr - x).abs().max() / x.abs().max()))
                    n += 1
            print(f"| {str(dtype).replace('torch.', '')} | {dims}D | {n} | {worst:.2e} |")


if __name__ == "__main__":
    main()
