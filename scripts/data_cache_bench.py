"""Data loading per batch with and without ``--cache-images`` on an ImageFolder (e.g. CIFAR-10 JPEGs).

Usage: ``OMP_NUM_THREADS=1 python scripts/data_cache_bench.py DATA_DIR [--images 5120] [--batch 128]``

Two passes over the same subset of the train split, in one process, with the CIFAR pad-crop/flip
augmentation and ``num_workers=0`` (as ``liftpool reproduce --budget xl`` runs): the first pass
decodes (and fills the cache), the second reads the files again or the cache.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader, Subset

from liftpool.data import build_datasets


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_dir", help="ImageFolder root with train/ and test/ (or val/)")
    p.add_argument("--images", type=int, default=5120, help="images of the train split to read (spread evenly)")
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    torch.set_num_threads(1)
    for cache in (False, True):
        d = build_datasets("imagefolder", args.data_dir, augment="cifar", cache_images=cache)
        n = len(d.train)  # type: ignore[arg-type]
        step = max(1, n // args.images)
        sub = Subset(d.train, list(range(0, n, step))[: args.images])
        loader = DataLoader(sub, batch_size=args.batch, shuffle=True, num_workers=0)
        for rep in range(2):
            t, batches = time.perf_counter(), 0
            for _ in loader:
                batches += 1
            ms = (time.perf_counter() - t) / batches * 1e3
            print(f"cache_images={cache} pass {rep + 1}: {ms:.1f} ms per batch of {args.batch}")


if __name__ == "__main__":
    main()
