"""A straightforward implementation of the same layers, for tests and benchmarks only.

It does what the official code does: loop over modalities in Python, call each conv and each
BN once per modality, and exchange channels with boolean indexing (which asks the host for the
indices, i.e. synchronises). It reuses the parameters of the fused layers unchanged, so
`as_reference(model)` turns a fused model into the loop version of the very same network and
the two must give identical outputs (tests/test_layers.py) while the fused one is faster
(benchmarks/bench_step.py).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Exchange, MultiConv, MultiNorm


def _split(x: torch.Tensor, m: int) -> list[torch.Tensor]:
    nm = x.shape[0]
    return list(x.view(nm // m, m, *x.shape[1:]).unbind(1))


def _merge(xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(xs, 1).flatten(0, 1)


class LoopConv(MultiConv):
    def forward(self, x):
        outs = []
        for i, xi in enumerate(_split(x, self.m)):
            w = self.weight if self.shared else self.weight[i * self.cout:(i + 1) * self.cout]
            b = self.bias
            if b is not None and not self.shared:
                b = b[i * self.cout:(i + 1) * self.cout]
            outs.append(F.conv2d(xi, w, b, self.stride, self.padding, self.dilation))
        return _merge(outs)


class LoopNorm(MultiNorm):
    def forward(self, x):
        if not self.private:
            return nn.BatchNorm2d.forward(self, x)
        outs = []
        for i, xi in enumerate(_split(x, self.m)):
            s = slice(i * self.c, (i + 1) * self.c)
            # Slices of the running buffers are views: batch_norm updates them in place.
            outs.append(F.batch_norm(xi, self.running_mean[s], self.running_var[s],
                                     self.weight[s], self.bias[s], self.training,
                                     self.momentum, self.eps))
        if self.training:
            self.num_batches_tracked += 1
        return _merge(outs)


class LoopExchange(Exchange):
    def forward(self, x, gamma):
        if not self.enabled:
            return x
        xs = _split(x, self.m)
        outs = []
        for i in range(self.m):
            others = xs[(i + 1) % self.m]
            for k in range(2, self.m):
                others = others + xs[(i + k) % self.m]
            if self.m > 2:
                others = others / (self.m - 1)
            idx = ((gamma[i].detach().abs() <= self.theta) & self.allowed[i]).nonzero()[:, 0]
            out = xs[i].clone()
            out[:, idx] = others[:, idx]
            outs.append(out)
        return _merge(outs)


_SWAP = {MultiConv: LoopConv, MultiNorm: LoopNorm, Exchange: LoopExchange}


def as_reference(model: nn.Module) -> nn.Module:
    """A deep copy of `model` whose multimodal layers run the per-modality loop."""
    ref = copy.deepcopy(model)
    for mod in ref.modules():
        if type(mod) in _SWAP:
            mod.__class__ = _SWAP[type(mod)]
    return ref
