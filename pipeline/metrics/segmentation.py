"""Pixel accuracy, mean accuracy and mean IoU as the RefineNet/CEN meter computes them.

One confusion matrix is accumulated over every pixel of the split (never averaged per image);
pixels labelled `ignore_index` do not count. Rows are ground truth, columns predictions.
  pixel acc = trace / total
  mean acc  = nanmean over classes of  diag / row sum          (recall per class)
  mean IoU  = nanmean over classes of  diag / (row + col - diag)
A class absent from the ground truth has an empty row: its recall is 0/0 = NaN and is skipped;
its IoU is NaN too unless it was predicted somewhere, in which case it is 0 and counts (the
meter divides without guarding, and nanmean skips only the NaNs).
"""
from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int) -> torch.Tensor:
    """(K, K) int64 counts, rows = ground truth, for integer predictions and labels.

    A bincount rather than torchmetrics: importing torchmetrics costs ~4 s per process here,
    and the pipeline starts ~40 processes (tests/test_metrics.py checks the counts by hand).
    """
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = target != ignore_index
    if not bool(((target[keep] >= 0) & (target[keep] < num_classes)).all()):
        raise ValueError(f"labels outside 0..{num_classes - 1} (and not the ignore index "
                         f"{ignore_index}) in the ground truth")
    idx = target[keep] * num_classes + pred[keep]
    return torch.bincount(idx, minlength=num_classes ** 2).view(num_classes, num_classes)


def scores(conf: torch.Tensor | np.ndarray) -> dict[str, float]:
    c = np.asarray(conf.cpu() if isinstance(conf, torch.Tensor) else conf, dtype=np.float64)
    diag, rows, cols = np.diag(c), c.sum(1), c.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = diag / rows
        iou = diag / (rows + cols - diag)
    total = c.sum()
    return {
        "pixel_acc": float(diag.sum() / total) if total else float("nan"),
        "mean_acc": float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan"),
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
    }
