"""Run a model over a whole split: one confusion matrix per output (each modality + ensemble)."""
from __future__ import annotations

import torch

from ..data.loader import SegmentationSplit
from ..metrics import confusion_matrix, scores


def output_names(modalities) -> list[str]:
    return [*modalities, "ensemble"]


@torch.no_grad()
def evaluate(model, split: SegmentationSplit, batch_size: int, device) -> dict[str, dict]:
    """{output: {"pixel_acc", "mean_acc", "miou"}} over every pixel of the split."""
    was_training = model.training
    model.eval()
    k = len(split.classes)
    names = output_names(split.modalities)
    conf = torch.zeros(len(names), k, k, dtype=torch.long, device=device)
    for start in range(0, len(split), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(split)))
        x, y = split.batch(idx)
        pred = model(x.to(device)).argmax(2)                # (B, M+1, H, W)
        y = y.to(device)
        for o in range(len(names)):
            conf[o] += confusion_matrix(pred[:, o], y, k, split.ignore_index)
    model.train(was_training)
    return {name: scores(conf[o]) for o, name in enumerate(names)}
