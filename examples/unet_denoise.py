"""An encoder-decoder (U-Net without skip convolutions) whose down- and up-sampling are a paired
pooling layer: LiftDownPool2d keeps the LL band and records the LH/HL/HH details; the matching
LiftUpPool2d puts them back.  Trained here to denoise generated pictures, against the same network
with MaxPool / MaxUnpool (or any other pair of ``liftpool.pooling.make_updown``).

The data are made on the fly (random rectangles and discs on a smooth background, plus Gaussian
noise), so the example needs nothing but torch:

    python examples/unet_denoise.py                       # LiftPool vs MaxPool/MaxUnpool, 300 steps each
    python examples/unet_denoise.py --updown lift aps --steps 100 --size 48

It prints, per pair, the test PSNR after training (higher is better) and the PSNR of the noisy input;
``--plot denoise.png`` also draws four test pictures: clean, noisy, and each pair's output.
A second check needs no training: with every convolution taken out, LiftUpPool(LiftDownPool(x))
gives the input back exactly, while MaxUnpool(MaxPool(x)) keeps a quarter of the pixels.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import Tensor, nn

from liftpool.pooling import make_updown


def pictures(n: int, size: int, generator: torch.Generator) -> Tensor:
    """``n`` grey pictures ``(n, 1, size, size)`` in [0, 1]: a smooth ramp plus 3-6 rectangles and discs."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = torch.empty(n, 1, size, size)
    for i in range(n):
        a, b, c = torch.rand(3, generator=generator).tolist()
        img = 0.3 * (a * xx + b * yy) + 0.2 * c
        for _ in range(int(torch.randint(3, 7, (1,), generator=generator))):
            cx, cy, r, v = torch.rand(4, generator=generator).tolist()
            r = 0.08 + 0.2 * r
            if torch.rand(1, generator=generator).item() < 0.5:
                mask = ((xx - cx).abs() < r) & ((yy - cy).abs() < 0.6 * r)
            else:
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            img = torch.where(mask, torch.full_like(img, v), img)
        out[i, 0] = img
    return out


def block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class UpDownNet(nn.Module):
    """Encoder (block, down) x depth, a middle block, decoder (up, block) x depth; every up layer
    takes the details its own down layer recorded."""

    def __init__(self, updown: str, width: int = 16, depth: int = 2) -> None:
        super().__init__()
        chans = [width * 2**i for i in range(depth)]
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        c_in = 1
        for c in chans:
            self.enc.append(block(c_in, c))
            down, up = make_updown(updown, c)
            self.down.append(down)
            self.up.append(up)
            c_in = c
        self.mid = block(chans[-1], chans[-1])
        for i in reversed(range(depth)):
            self.dec.append(block(chans[i], chans[i - 1] if i else width))
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        details = []
        h = x
        for enc, down in zip(self.enc, self.down):
            h, d = down(enc(h))
            details.append(d)
        h = self.mid(h)
        for dec, up, d in zip(self.dec, reversed(self.up), reversed(details)):
            h = dec(up(h, d))
        return x + self.head(h)  # predict the correction of the noisy input


def psnr(a: Tensor, b: Tensor) -> float:
    return float(10 * math.log10(1.0 / torch.mean((a - b) ** 2).item()))


def test_pictures(args: argparse.Namespace) -> tuple[Tensor, Tensor]:
    """The same 64 (clean, noisy) test pictures for every pair."""
    g = torch.Generator().manual_seed(12345)
    clean = pictures(64, args.size, g)
    return clean, clean + args.noise * torch.randn(clean.shape, generator=g)


def train_and_test(updown: str, args: argparse.Namespace) -> tuple[float, float, float, Tensor]:
    """(test PSNR of the denoised pictures, of the noisy ones, seconds, the denoised pictures) for one pair."""
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    net = UpDownNet(updown, width=args.width)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    start = time.perf_counter()
    net.train()
    for _ in range(args.steps):
        clean = pictures(args.batch_size, args.size, g)
        noisy = clean + args.noise * torch.randn(clean.shape, generator=g)
        loss = torch.mean((net(noisy) - clean) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    clean, noisy = test_pictures(args)
    net.eval()
    with torch.no_grad():
        out = net(noisy).clamp(0, 1)
    return psnr(out, clean), psnr(noisy, clean), seconds, out


def plot(path: str, clean: Tensor, noisy: Tensor, outputs: dict[str, tuple[float, Tensor]], n: int = 4) -> None:
    """Rows: clean, noisy, then each pair's output (with its test PSNR); columns: ``n`` test pictures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from liftpool.io import atomic_save_figure

    rows = [("clean", clean), (f"noisy ({psnr(noisy, clean):.1f} dB)", noisy)]
    rows += [(f"{name} ({db:.1f} dB)", out) for name, (db, out) in outputs.items()]
    fig, axes = plt.subplots(len(rows), n, figsize=(2 * n, 2 * len(rows)), squeeze=False)
    for r, (title, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(imgs[c, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(title)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def round_trip_error(updown: str, size: int) -> float:
    """Relative error of up(down(x)) on a random map, with nothing in between."""
    down, up = make_updown(updown, 4)
    x = torch.randn(2, 4, size + 1, size, generator=torch.Generator().manual_seed(1))  # an odd size on purpose
    with torch.no_grad():
        y, d = down(x)
        return float((up(y, d) - x).norm() / x.norm())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updown", nargs="+", default=["lift", "max"], help="pairs of liftpool.pooling.make_updown")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--size", type=int, default=64, help="picture side (pixels)")
    ap.add_argument("--width", type=int, default=16, help="channels of the first block")
    ap.add_argument("--noise", type=float, default=0.1, help="standard deviation of the added noise")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", metavar="PNG", help="also draw four test pictures and every pair's output there")
    args = ap.parse_args()
    if args.steps < 1 or args.batch_size < 1 or args.size < 8 or args.width < 1:
        ap.error("--steps, --batch-size and --width must be positive and --size at least 8")
    print("| pair | round trip rel. error | test PSNR (dB) | noisy input PSNR (dB) | train time (s) |")
    print("|---|---:|---:|---:|---:|")
    outputs: dict[str, tuple[float, Tensor]] = {}
    for name in args.updown:
        db, noisy_db, sec, out = train_and_test(name, args)
        outputs[name] = (db, out)
        trip = round_trip_error(name, args.size)
        print(f"| {name} | {trip:.2e} | {db:.2f} | {noisy_db:.2f} | {sec:.1f} |", flush=True)
    if args.plot:
        plot(args.plot, *test_pictures(args), outputs)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
