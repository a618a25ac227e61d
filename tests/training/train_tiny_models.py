"""Plug-in models for the training tests (``--model train_tiny_models:tiny_cnn``)."""

from torch import nn

from liftpool.pooling import make_pool


def tiny_cnn(
    *, pool: str, num_classes: int, width: float = 1.0, dropout: float = 0.0, batch_norm: bool = True
) -> nn.Module:
    """conv-(BN)-ReLU-pool x2, global average pool, dropout, linear."""
    c = max(2, int(round(8 * width)))
    layers = []
    cin = 3
    for _ in range(2):
        layers += [nn.Conv2d(cin, c, 3, padding=1)]
        if batch_norm:
            layers += [nn.BatchNorm2d(c)]
        layers += [nn.ReLU(), make_pool(pool, c)]
        cin = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, num_classes))


tiny_cnn.task = "classification"
