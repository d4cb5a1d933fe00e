"""Multimodal ResNet-bottleneck encoder (ResNet-50/101/152 at paper scale, scaled down for mini).

Structure and parameter names follow torchvision's ResNet (stride on the 3x3 conv, "v1.5"), so
its ImageNet weights can later initialise the shared convs and every private BN. Exchange and
ℓ1 sit only after bn2, the BN of each bottleneck's 3x3 conv (appendix B): not the 7x7 stem, not
the 1x1 convs, not the downsample branch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MultiConv, MultiNorm, NormExchange, subpart_mask
from .registry import Variant


@dataclass(frozen=True)
class Fusion:
    """What a variant means for one network with M modalities."""
    m: int
    variant: Variant
    theta: float

    @property
    def shared_conv(self) -> bool:
        return self.variant.conv == "shared"

    @property
    def private_bn(self) -> bool:
        return self.variant.bn == "private"

    def region(self, c: int) -> torch.Tensor | None:
        """(M, C) ℓ1/exchange region: each modality's own sub-part, or all channels."""
        if self.variant.l1 == "all":
            return torch.ones(self.m, c, dtype=torch.bool)
        if self.variant.l1 == "half" or self.variant.exchange:
            return subpart_mask(self.m, c)
        return None

    def norm_exchange(self, c: int) -> NormExchange:
        region = self.region(c)
        sparse = region if self.variant.l1 != "none" else None
        allowed = region if self.variant.exchange else None
        return NormExchange(self.m, c, self.private_bn, self.theta, sparse, allowed)

    def conv(self, cin, cout, k, stride=1, padding=0, bias=False, init="he") -> MultiConv:
        return MultiConv(self.m, cin, cout, k, stride, padding, bias=bias, shared=self.shared_conv,
                         init=init)

    def norm(self, c: int) -> MultiNorm:
        return MultiNorm(self.m, c, self.private_bn)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, fu: Fusion, cin: int, planes: int, stride: int):
        super().__init__()
        cout = planes * self.expansion
        self.conv1, self.bn1 = fu.conv(cin, planes, 1), fu.norm(planes)
        self.conv2 = fu.conv(planes, planes, 3, stride, 1)
        self.bn2 = fu.norm_exchange(planes)            # the only exchange / ℓ1 point
        self.conv3, self.bn3 = fu.conv(planes, cout, 1), fu.norm(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(fu.conv(cin, cout, 1, stride), fu.norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class Encoder(nn.Module):
    """Stem + four stages; returns the four stage outputs (strides 4, 8, 16, 32)."""

    def __init__(self, fu: Fusion, layers: tuple[int, ...], width: int, dropout: float):
        super().__init__()
        self.conv1 = fu.conv(3, width, 7, 2, 3)
        self.bn1 = fu.norm(width)
        cin, stages = width, []
        for i, blocks in enumerate(layers):
            planes, stride = width * 2 ** i, 1 if i == 0 else 2
            stage = []
            for b in range(blocks):
                stage.append(Bottleneck(fu, cin, planes, stride if b == 0 else 1))
                cin = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = tuple(width * 2 ** i * Bottleneck.expansion for i in range(4))
        # The official code drops out layer3 and layer4 outputs (p = 0.5 at paper scale).
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        l1 = self.layer1(x)
        l2 = self.layer2(l1)
        l3 = self.drop(self.layer3(l2))
        l4 = self.drop(self.layer4(l3))
        return [l1, l2, l3, l4]

    def exchange_points(self) -> list[NormExchange]:
        return [m for m in self.modules() if isinstance(m, NormExchange)]
