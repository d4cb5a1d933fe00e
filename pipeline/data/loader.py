"""Read a prepared dataset split into memory and serve normalised, augmented batches.

Works on any dataset in the common format (pipeline.data.format), so training never knows
whether it reads synthetic scenes or NYUDv2. Every modality becomes a 3-channel float image
(paper footnote 3: inputs broadened to a common channel count; the official code tiles depth
to 3 channels), normalised as the official code does where it says (RGB: ImageNet mean/std;
depth: metres / 5, i.e. millimetres / 5000, no mean/std).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import format as fmt

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def normalise(modality: str, raw: torch.Tensor) -> torch.Tensor:
    """Raw stored values (B, C, H, W) -> float (B, 3, H, W) network input."""
    x = raw.float()
    if modality in ("rgb", "texture"):
        return (x / 255 - IMAGENET_MEAN) / IMAGENET_STD
    if modality == "depth":
        # Stored as uint16 mm (held as int32) or float32 metres: both become metres here.
        metres = raw if raw.is_floating_point() else x * fmt.MODALITIES["depth"]["unit_m"]
        return (metres / 5.0).expand(-1, 3, -1, -1)
    if modality == "normal":
        return x / 127.5 - 1
    if modality in ("shade", "edge"):
        return (x / 255).expand(-1, 3, -1, -1)
    raise ValueError(f"no normalisation for modality {modality!r}; "
                     f"accepted: rgb, texture, depth, normal, shade, edge")


def _interp_mode(modality: str) -> str:
    # Depth holes are zeros: blending them with valid depth would invent geometry.
    return "nearest" if modality == "depth" else "bilinear"


def _window(size: int, target: int, frac: torch.Tensor) -> tuple[slice, slice]:
    """(source, destination) slices along one axis of an image rescaled to `size`: a random
    crop of `target` when it grew, a random placement inside `target` when it shrank."""
    offset = int(frac.item() * (abs(size - target) + 1))
    if size >= target:
        return slice(offset, offset + target), slice(0, target)
    return slice(0, size), slice(offset, offset + size)


class SegmentationSplit:
    """One split held in memory as stored (uint8/uint16), normalised per batch."""

    def __init__(self, root: str | Path, split: str, modalities: tuple[str, ...]):
        self.root, self.split, self.modalities = Path(root), split, tuple(modalities)
        self.meta = fmt.read_meta(self.root)
        missing = [m for m in self.modalities if m not in self.meta["modalities"]]
        if missing:
            raise ValueError(f"{self.root}: dataset {self.meta['name']!r} has no modality "
                             f"{missing[0]!r}; it has {', '.join(self.meta['modalities'])}")
        self.ids = fmt.read_split(self.root, split)
        self.classes = list(self.meta["classes"])
        self.ignore_index = int(self.meta["ignore_index"])
        labels = [fmt.read_label(self.root, i) for i in self.ids]
        sizes = sorted({a.shape for a in labels})
        if len(sizes) > 1:   # SUN RGB-D keeps each sensor's native size
            raise ValueError(f"{self.root}: split {split!r} mixes image sizes {sizes[:3]}; this "
                             f"loader holds a split as one tensor and needs one size "
                             f"(accepted: a dataset prepared at a single size)")
        self.labels = torch.from_numpy(np.stack(labels))
        self.raw = {m: self._stack([fmt.read_modality(self.root, m, i) for i in self.ids])
                    for m in self.modalities}

    @staticmethod
    def _stack(arrays: list[np.ndarray]) -> torch.Tensor:
        a = np.stack(arrays)
        if a.ndim == 3:
            a = a[..., None]
        if a.dtype == np.uint16:          # torch has no uint16 arithmetic on every device
            a = a.astype(np.int32)
        return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, index: torch.Tensor, augment=None, generator=None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs (B, M, 3, H, W) float, labels (B, H, W) int64) for the given sample indices.

        augment: None, or (scale_min, scale_max, flip) for the official training augmentation
        (random rescale, crop/pad back to size with label 255 in padding, horizontal flip).
        """
        xs = [normalise(m, self.raw[m][index]) for m in self.modalities]
        y = self.labels[index].long()
        if augment is not None:
            xs, y = self._augment(xs, y, *augment, generator)
        return torch.stack(xs, 1), y

    def _augment(self, xs, y, scale_min, scale_max, flip, g):
        b, _, h, w = xs[0].shape
        out_x = [torch.zeros_like(x) for x in xs]
        out_y = torch.full_like(y, self.ignore_index)
        scales = scale_min + (scale_max - scale_min) * torch.rand(b, generator=g)
        flips = torch.rand(b, generator=g) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
        offsets = torch.rand(b, 2, generator=g)
        for i in range(b):
            sh, sw = max(1, round(h * scales[i].item())), max(1, round(w * scales[i].item()))
            (sy, dy), (sx, dx) = _window(sh, h, offsets[i, 0]), _window(sw, w, offsets[i, 1])
            for m, (x, ox) in enumerate(zip(xs, out_x)):
                mode = _interp_mode(self.modalities[m])
                kw = {"align_corners": False} if mode == "bilinear" else {}
                r = F.interpolate(x[i:i + 1], size=(sh, sw), mode=mode, **kw)[0]
                ox[i][:, dy, dx] = r[:, sy, sx]
            ry = F.interpolate(y[i:i + 1, None].float(), size=(sh, sw), mode="nearest")[0, 0]
            out_y[i][dy, dx] = ry[sy, sx].long()
            if flips[i]:
                for ox in out_x:
                    ox[i] = ox[i].flip(-1)
                out_y[i] = out_y[i].flip(-1)
        return out_x, out_y
