"""SegNet (Badrinarayanan et al. 2017) with a VGG16-BN encoder and paired down/up pooling.

Each encoder stage ends with a down-pooling layer that records what its paired decoder
up-pooling needs: max-pooling indices (``"max"``: MaxUnpool; ``"maxblur"``: MaxUnpool then a
blur), the detail bands ``LH, HL, HH`` of a LiftDownPool2d keeping only ``LL`` (``"lift"``:
LiftUpPool2d, as in the paper) or the polyphase component kept by adaptive or learnable
polyphase sampling (``"aps"``: APS-U; ``"lps"``: LPU).  The recorded input sizes make the
output the input's size for any ``H, W``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ..pooling import UPDOWN, make_updown
from ._common import check_num_classes, check_pool, check_pool_kwargs, check_width, scaled

__all__ = ["SEGNET_POOLS", "SegNet", "segnet"]

#: Pool names SegNet accepts (the paired down/up layers of :func:`liftpool.pooling.make_updown`).
SEGNET_POOLS: tuple[str, ...] = tuple(UPDOWN)

_ENCODER: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
_DECODER: tuple[tuple[int, ...], ...] = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64,))


def _cbr(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SegNet(nn.Module):
    """SegNet: VGG16-BN encoder, mirrored decoder, paired down/up pooling.

    Args:
        num_classes: output channels (logits per class).
        pool: ``"max"``, ``"maxblur"``, ``"lift"``, ``"aps"`` or ``"lps"`` (see
            :func:`liftpool.pooling.make_updown`).
        width: channel multiplier (``0.125`` for tests).
        pool_kwargs: passed to every down/up pair (e.g. ``{"kernel_size": 3}`` for lift).
        in_channels: image channels.

    Shape:
        - Input: ``(N, in_channels, H, W)``, any ``H, W >= 1``.
        - Output: ``(N, num_classes, H, W)`` logits.

    Examples:
        >>> import torch
        >>> net = SegNet(5, pool="lift", width=0.0625)
        >>> net(torch.randn(1, 3, 23, 17)).shape
        torch.Size([1, 5, 23, 17])
    """

    def __init__(self, num_classes: int, *, pool: str = "max", width: float = 1.0,
                 pool_kwargs: Mapping[str, Any] | None = None, in_channels: int = 3) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.pool_name = check_pool(pool, SEGNET_POOLS)
        width = check_width(width)
        pk = check_pool_kwargs(pool_kwargs)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        c = in_channels
        enc_out: list[int] = []
        for stage in _ENCODER:
            layers: list[nn.Module] = []
            for v in stage:
                out = scaled(v, width)
                layers += _cbr(c, out)
                c = out
            self.encoders.append(nn.Sequential(*layers))
            down, up = make_updown(pool, c, **pk)
            self.downs.append(down)
            self.ups.append(up)
            enc_out.append(c)
        self.decoders = nn.ModuleList()
        for stage in _DECODER:
            layers = []
            for v in stage:
                out = scaled(v, width)
                layers += _cbr(c, out)
                c = out
            self.decoders.append(nn.Sequential(*layers))
        self.classifier = nn.Conv2d(c, num_classes, 3, padding=1)
        # the decoder input of stage i must match the channels its up-pooling was built for
        dec_in = [enc_out[-1]] + [scaled(s[-1], width) for s in _DECODER[:-1]]
        assert dec_in == enc_out[::-1], (dec_in, enc_out)

    def forward(self, x: Tensor) -> Tensor:
        details = []
        for enc, down in zip(self.encoders, self.downs):
            x, det = down(enc(x))
            details.append(det)
        for dec, up, det in zip(self.decoders, reversed(self.ups), reversed(details)):
            x = dec(up(x, det))
        return self.classifier(x)


def segnet(*, num_classes: int, pool: str = "max", width: float = 1.0,
           pool_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> SegNet:
    """SegNet with a VGG16-BN encoder (see :class:`SegNet`)."""
    return SegNet(num_classes, pool=pool, width=width, pool_kwargs=pool_kwargs, **kwargs)
