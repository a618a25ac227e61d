"""Figures of the paper as PNG writers (matplotlib, Agg): see :mod:`liftpool.viz.figures`."""

from .figures import (
    CAMVID_PALETTE,
    PoolCapture,
    capture_first_pool,
    colorize_labels,
    plot_consistency_vs_accuracy,
    plot_metric_per_type,
    plot_pooled_feature_maps,
    plot_segmentation_overlays,
    plot_subbands,
    save_figure,
)

__all__ = [
    "CAMVID_PALETTE",
    "PoolCapture",
    "capture_first_pool",
    "colorize_labels",
    "plot_consistency_vs_accuracy",
    "plot_metric_per_type",
    "plot_pooled_feature_maps",
    "plot_segmentation_overlays",
    "plot_subbands",
    "save_figure",
]
