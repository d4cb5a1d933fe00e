"""The multimodal segmentation network: encoder + RefineNet decoder per modality, and the ensemble.

Input: (N, M, 3, H, W), one 3-channel image per modality (depth is tiled to 3 channels: the
paper's footnote 3 broadens inputs to a common channel count). Output: logits (N, M+1, K, H, W),
one map per modality and, last, the ensemble Σ softmax(α)_m · logits_m of Eq. 4.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Encoder, Fusion
from .decoder import RefineDecoder
from .registry import Variant


@dataclass(frozen=True)
class ModelSpec:
    """Sizes of the network (from the profile). Paper scale: ResNet-101 is layers (3, 4, 23, 3),
    width 64, decoder widths (256, 256, 256, 512), dropout 0.5.

    gamma_init: initial γ of the BN after each encoder 3x3 conv (the exchange points). The paper
    fine-tunes ImageNet weights, whose γ there are already small and spread out, over ~40k
    steps; a mini run trains from scratch for a few hundred steps, so starting at γ = 1 the ℓ1
    term could never bring any γ̂ near θ and no exchange would ever happen. A smaller start
    lets the same mechanism play out in the short run (same value for every variant).
    """
    layers: tuple[int, ...]
    width: int
    decoder_widths: tuple[int, ...]
    dropout: float
    gamma_init: float = 1.0
    # "imagenet": the encoder starts from torchvision's ImageNet ResNet (paper §4.1), shared
    # convs and every private BN from the single pretrained one (pipeline.models.pretrained).
    init: str = "scratch"


class CENSegNet(nn.Module):
    def __init__(self, spec: ModelSpec, variant: Variant, modalities: tuple[str, ...],
                 num_classes: int, theta: float = 0.0, detach_ensemble: bool = False):
        super().__init__()
        self.modalities, self.m = tuple(modalities), len(modalities)
        self.variant, self.num_classes = variant, num_classes
        fu = Fusion(self.m, variant, theta)
        self.encoder = Encoder(fu, spec.layers, spec.width, spec.dropout)
        self.decoder = RefineDecoder(fu, self.encoder.out_channels, spec.decoder_widths,
                                     num_classes, spec.dropout)
        # Ensemble weights α (softmax keeps them on the simplex of Eq. 4).
        self.alpha = nn.Parameter(torch.ones(self.m))
        # Paper (Eq. 4): the ensemble loss trains the whole network. The official code feeds
        # DETACHED logits to the ensemble, so its loss trains α alone; switchable here.
        self.detach_ensemble = detach_ensemble
        self.points = self.encoder.exchange_points()
        for p in self.points:
            nn.init.constant_(p.bn.weight, spec.gamma_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, m, c, h, w = x.shape
        feats = self.encoder(x.reshape(n * m, c, h, w))
        logits = self.decoder(feats)
        logits = logits.view(n, m, *logits.shape[1:])
        src = logits.detach() if self.detach_ensemble else logits
        weights = torch.softmax(self.alpha, 0).view(1, m, 1, 1, 1)
        ens = (weights * src).sum(1, keepdim=True)
        out = torch.cat([logits, ens], 1)
        return F.interpolate(out.flatten(0, 1), size=(h, w), mode="bilinear",
                             align_corners=False).view(n, m + 1, -1, h, w)

    def l1_penalty(self) -> torch.Tensor:
        """Σ_l |γ̂_l| of Eq. 4 over every exchange point (zero for variants without ℓ1)."""
        return torch.stack([p.l1() for p in self.points]).sum()

    def gammas(self) -> list[torch.Tensor]:
        """γ of every exchange point, each (M, C)."""
        return [p.bn.gamma().detach() for p in self.points]

    def param_groups(self) -> tuple[list, list]:
        """(encoder params, decoder params + α): they get different learning rates (paper §4.1)."""
        enc = list(self.encoder.parameters())
        ids = {id(p) for p in enc}
        return enc, [p for p in self.parameters() if id(p) not in ids]


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the cross-entropies of every output (each modality and the ensemble).

    Returns (total, per-output losses (M+1,)); logits (N, M+1, K, H, W), target (N, H, W).
    """
    n, outs, k, h, w = logits.shape
    per_pixel = F.cross_entropy(logits.transpose(1, 2), target[:, None].expand(n, outs, h, w),
                                ignore_index=ignore_index, reduction="none")
    valid = (target != ignore_index)[:, None].expand_as(per_pixel)
    per_output = (per_pixel * valid).sum((0, 2, 3)) / valid.sum((0, 2, 3)).clamp(min=1)
    return per_output.sum(), per_output.detach()


def build_model(spec: ModelSpec, variant: Variant, modalities, num_classes: int, theta: float,
                detach_ensemble: bool = False) -> CENSegNet:
    return CENSegNet(spec, variant, tuple(modalities), num_classes, theta, detach_ensemble)
