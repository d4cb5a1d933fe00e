"""Fréchet Inception Distance with the TF 2015-12-05 Inception-v3 (pytorch-fid's port).

FID numbers are only comparable when computed with THE network of the original TF
implementation; torchvision's ImageNet Inception-v3 gives different features. Its weights
(pt_inception-2015-12-05-6726825d.pth) use the parameter names of torchvision's
`Inception3(num_classes=1008, aux_logits=False)`, so we build that module and change only what
differs in the TF graph:
  * Mixed_5b/5c/5d (InceptionA), Mixed_6b..6e (InceptionC), Mixed_7b (first InceptionE): the
    pool branch's 3x3 average pooling ignores the zero padding (count_include_pad=False);
  * Mixed_7c (last InceptionE): the pool branch uses 3x3 MAX pooling (stride 1, padding 1).
Input: RGB in [0, 1], any size; resized bilinearly to 299x299 and scaled to [-1, 1]. Features:
the 2048-d global average pool after Mixed_7c ("pool3"); the 1008-way classifier `fc` is kept
only so the file loads strictly, and never run.

API: FIDInceptionV3, load_fid_inception(path), prepare_fid_inception(src, dst),
feature_stats(features) -> (mu, sigma), frechet_distance(mu1, sigma1, mu2, sigma2).
Limits: statistics are float64 numpy on the host. FID is biased by the sample count and needs
thousands of images; with fewer than 2048 sigma is singular (the diagonal offset in
frechet_distance only keeps sqrtm finite, it does not remove the bias). forward checks the
[0, 1] range, which costs one host synchronisation per batch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torchvision.models.inception import (BasicConv2d, Inception3, InceptionA, InceptionAux,
                                          InceptionB, InceptionC, InceptionD, InceptionE)

from ..io import atomic_write
from ..models.pretrained import check_state_dict, load_state_dict_file

FEATURE_DIM = 2048
INPUT_SIZE = 299


def avg_pool_no_pad(x: torch.Tensor) -> torch.Tensor:
    """TF's 3x3/1 'SAME' average pool: border windows average only the pixels that exist."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def max_pool_same(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


# The blocks keep torchvision's sub-modules (hence its parameter names) and replace forward,
# whose only change is the pooling of the pool branch (`pool`).

class FIDInceptionA(InceptionA):
    pool = staticmethod(avg_pool_no_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b1, b5, b3, self.branch_pool(self.pool(x))], 1)


class FIDInceptionC(InceptionC):
    pool = staticmethod(avg_pool_no_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                     self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = conv(d)
        return torch.cat([b1, b7, d, self.branch_pool(self.pool(x))], 1)


class FIDInceptionE(InceptionE):
    """Mixed_7b: average pooling without padding."""
    pool = staticmethod(avg_pool_no_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        s = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(s), self.branch3x3_2b(s)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        return torch.cat([b1, b3, bd, self.branch_pool(self.pool(x))], 1)


class FIDInceptionEMax(FIDInceptionE):
    """Mixed_7c: max pooling in the pool branch (a quirk of the TF graph)."""
    pool = staticmethod(max_pool_same)


class FIDInceptionV3(Inception3):
    """pool3 features (N, 2048) of the FID Inception; always in eval mode, never tracks grads.

    A torchvision Inception3 (so the checkpoint's keys are its own) with the FID blocks.
    """

    def __init__(self):
        super().__init__(num_classes=1008, aux_logits=False, transform_input=False,
                         init_weights=False,
                         inception_blocks=[BasicConv2d, FIDInceptionA, InceptionB, FIDInceptionC,
                                           InceptionD, FIDInceptionE, InceptionAux])
        self.Mixed_7c = FIDInceptionEMax(2048)  # same sub-modules as Mixed_7b's class: same keys
        self.eval()

    def train(self, mode: bool = True) -> "FIDInceptionV3":
        # BN statistics must stay those of the TF graph: model.train() must not change them.
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"expected float images (N, 3, H, W) in [0, 1], got "
                             f"{images.dtype} {tuple(images.shape)}")
        lo, hi = float(images.min()), float(images.max())
        if lo < -1e-3 or hi > 1 + 1e-3:   # the usual mistake: 0..255 or mean/std-normalised
            raise ValueError(f"images must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
        x = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                          align_corners=False)
        x = 2 * x - 1
        x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean((2, 3)).float()


def _expected_shapes() -> dict[str, tuple]:
    with torch.device("meta"):              # layout only: no allocation, no init
        return {k: tuple(v.shape) for k, v in FIDInceptionV3().state_dict().items()}


def load_fid_inception(path: str | Path, device: str | torch.device = "cpu") -> FIDInceptionV3:
    """The FID network with the weights at `path`, strictly checked (one-line ValueError)."""
    sd = load_state_dict_file(path)
    check_state_dict(sd, _expected_shapes(), f"{path} (FID Inception-v3)")
    model = FIDInceptionV3()
    model.load_state_dict(sd)
    return model.to(device).eval()


def prepare_fid_inception(src: str | Path, dst: str | Path) -> dict:
    """Check that src loads strictly into FIDInceptionV3, then write it to dst atomically."""
    sd = load_state_dict_file(src)
    check_state_dict(sd, _expected_shapes(), f"{src} (FID Inception-v3)")
    FIDInceptionV3().load_state_dict(sd)    # also catches anything the shape check cannot
    atomic_write(dst, lambda p: torch.save(sd, p))
    stats = ("running_mean", "running_var", "num_batches_tracked")
    return {"tensors": len(sd),
            "parameters": sum(v.numel() for k, v in sd.items() if not k.endswith(stats))}


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D), float64, of features (N, D), N >= 2."""
    f = features.detach().cpu().double().numpy() if torch.is_tensor(features) \
        else np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"feature_stats needs features (N, D) with N >= 2, got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """d² = ||mu1 - mu2||² + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^½).

    The product of two covariances estimated from few samples is near-singular and sqrtm may
    then fail (non-finite result): retry with eps added to both diagonals. Round-off gives the
    square root tiny imaginary parts: dropped, unless they are large (then the input is wrong).
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu1, mu2))
    s1, s2 = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm(sigma1 sigma2) has a large imaginary part "
                             f"({np.abs(covmean.imag).max():.3g}): are both covariances PSD?")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
