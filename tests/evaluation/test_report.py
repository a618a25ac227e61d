"""Result files: valid JSON (NaN -> null), one Markdown table for all checkpoints, atomic writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

from liftpool.evaluation.report import atomic_write_text, markdown_report, write_results


def _rows() -> list[dict]:
    return [
        {
            "label": "max",
            "model": {"pool": "max"},
            "images": 10,
            "accuracy": {"top1_error": 0.25, "top5_error": 0.05},
            "corruption": {
                "ce": {"fog": 0.5, "saturate": 0.4},
                "mce": 0.5,
                "mce_normalized": 0.61,
                "relative_mce": 0.25,
                "mce_extra": 0.4,
            },
        },
        {
            "label": "lift",
            "model": {"pool": "lift"},
            "images": 10,
            "accuracy": {"top1_error": 0.2, "top5_error": 0.04},
            "segmentation": {
                "iou": [0.5, math.nan],
                "miou": 0.5,
                "pixel_accuracy": 0.9,
                "mean_class_accuracy": 0.7,
                "class_names": ["a", "b"],
            },
        },
    ]


def test_markdown_one_table_and_named_normalisations() -> None:
    md = markdown_report(_rows())
    header = next(line for line in md.splitlines() if line.startswith("| label"))
    assert "mCE unnorm. (%)" in header and "mCE AlexNet-norm. (%)" in header and "mIoU (%)" in header
    assert "| max | max | 10 | 25.00 | 5.00 |" in md and "| lift | lift | 10 | 20.00 | 4.00 |" in md
    assert "| fog | 50.00 |" in md and "| b | - |" in md  # NaN IoU shown as '-'


def test_write_results_json_and_no_temp_files(tmp_path: Path) -> None:
    j, m = write_results(tmp_path / "out", _rows(), meta={"command": "x"})
    data = json.loads(j.read_text())
    assert data["meta"] == {"command": "x"} and data["results"][1]["segmentation"]["iou"] == [0.5, None]
    assert m.read_text().startswith("# liftpool eval")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.json", "results.md"]
    # a rewrite replaces the file whole
    atomic_write_text(j, "{}")
    assert j.read_text() == "{}"
