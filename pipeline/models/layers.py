"""The multimodal layers of CEN: shared/unshared convolutions, private/shared BN, channel exchange.

Layout. A multimodal feature map for M modalities and batch N is ONE tensor of shape
(N*M, C, H, W), sample-major: row n*M + m holds modality m of sample n. Two views of it are free
(no copy), and each layer picks the one that lets a single kernel serve all modalities:

  (N*M, C, H, W)  a shared conv sees N*M ordinary images       -> one conv call
  (N, M*C, H, W)  modality m owns channels [m*C, (m+1)*C)        -> private BNs are one batch_norm
                                                                    call, unshared convs one
                                                                    grouped conv (groups=M)

So nothing loops over modalities in Python and the exchange mask never leaves the device.
`pipeline.models.reference` holds the straightforward per-modality loop (as the official code
does it) with the same parameters; tests check both give identical outputs, and
benchmarks/bench_step.py measures the difference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def to_channels(x: torch.Tensor, m: int) -> torch.Tensor:
    """(N*M, C, H, W) -> (N, M*C, H, W): modalities side by side along channels (a free view)."""
    nm, c, h, w = x.shape
    return x.reshape(nm // m, m * c, h, w)


def to_batch(x: torch.Tensor, m: int) -> torch.Tensor:
    """(N, M*C, H, W) -> (N*M, C, H, W): modalities as extra batch rows (a free view)."""
    n, mc, h, w = x.shape
    return x.reshape(n * m, mc // m, h, w)


class MultiConv(nn.Module):
    """A conv applied to every modality: one weight for all (shared) or one per modality (unshared).

    Unshared weights are stored stacked, (M*out, in, k, k), so that they run as one grouped conv.
    """

    def __init__(self, m: int, cin: int, cout: int, kernel: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, bias: bool = False, shared: bool = True,
                 init: str = "he"):
        super().__init__()
        self.m, self.cin, self.cout, self.shared = m, cin, cout, shared
        self.stride, self.padding, self.dilation = stride, padding, dilation
        copies = 1 if shared else m
        self.weight = nn.Parameter(torch.empty(copies * cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(copies * cout)) if bias else None
        # Initialise each copy as ONE modality's conv: "he" = torchvision ResNet's encoder init;
        # "default" = nn.Conv2d's own, which the BN-free RefineNet decoder needs to keep its
        # residual sums from blowing up at initialisation.
        for i, w in enumerate(self.weight.data.view(copies, cout, cin, kernel, kernel)):
            if init == "he":
                nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.kaiming_uniform_(w, a=5 ** 0.5)
                if self.bias is not None:
                    bound = 1 / (cin * kernel * kernel) ** 0.5
                    nn.init.uniform_(self.bias.data[i * cout:(i + 1) * cout], -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        args = (self.stride, self.padding, self.dilation)
        if self.shared:
            return F.conv2d(x, self.weight, self.bias, *args)
        y = F.conv2d(to_channels(x, self.m), self.weight, self.bias, *args, groups=self.m)
        return to_batch(y, self.m)

    def extra_repr(self) -> str:
        k = self.weight.shape[-1]
        return (f"m={self.m}, {self.cin}->{self.cout}, k={k}, stride={self.stride}, "
                f"shared={self.shared}")


class MultiNorm(nn.BatchNorm2d):
    """BatchNorm over all modalities: private (γ, β and statistics per modality) or shared.

    Private parameters are laid out modality-major (M*C,), so gamma()[m] is modality m's γ.
    Shared BN normalises all modalities with statistics pooled over them (one BN layer applied
    to the stacked batch): its running statistics, like its γ and β, are common to all.
    """

    def __init__(self, m: int, c: int, private: bool = True):
        super().__init__(m * c if private else c)
        self.m, self.c, self.private = m, c, private

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.private:
            return to_batch(super().forward(to_channels(x, self.m)), self.m)
        return super().forward(x)

    def gamma(self) -> torch.Tensor:
        """γ as (M, C) (a shared BN's single γ is repeated for every modality)."""
        g = self.weight.view(-1, self.c)
        return g if self.private else g.expand(self.m, self.c)


def subpart_mask(m: int, c: int) -> torch.Tensor:
    """(M, C) bool: modality i owns the i-th of M equal sub-parts of the channels (paper §3.3)."""
    bounds = [round(i * c / m) for i in range(m + 1)]
    mask = torch.zeros(m, c, dtype=torch.bool)
    for i in range(m):
        mask[i, bounds[i]:bounds[i + 1]] = True
    return mask


class Exchange(nn.Module):
    """Channel exchanging of Eq. 6, applied right after a private BN.

    A channel c of modality m is replaced by the mean of the other modalities' BN outputs at c
    when |γ_m,c| <= θ and c lies in the region where m may be replaced (`allowed`: its own 1/M
    sub-part by default, every channel for the all-channel variant). The mask is a device
    tensor: no host synchronisation, no boolean indexing. torch.where sends the gradient of a
    replaced channel into the other modalities and none into the replaced one, exactly the
    paper's "gradients are detached from the replaced channel and back-propagated through the
    new ones".

    Paper vs official code: the code swaps the two modalities (M = 2 only) and tests the
    threshold on all channels while penalising only half; we follow the paper (mean over the
    other M-1 modalities, threshold tested only where exchange is allowed).
    """

    def __init__(self, m: int, c: int, theta: float, allowed: torch.Tensor | None):
        super().__init__()
        self.m, self.c, self.theta = m, c, float(theta)
        self.enabled = allowed is not None and m > 1
        if allowed is None:
            allowed = torch.zeros(m, c, dtype=torch.bool)
        self.register_buffer("allowed", allowed.clone(), persistent=False)

    def mask(self, gamma: torch.Tensor) -> torch.Tensor:
        """(M, C) bool: which channels of which modality are replaced right now."""
        return (gamma.detach().abs() <= self.theta) & self.allowed

    def others_mean(self, y: torch.Tensor) -> torch.Tensor:
        """Mean of the other modalities, y: (N, M, C, H, W).

        Summed in the fixed order m+1, m+2, ... (mod M) so the loop reference can reproduce it
        bit for bit; for M = 2 it is an exact swap.
        """
        total = y.roll(-1, dims=1)
        for k in range(2, self.m):
            total = total + y.roll(-k, dims=1)
        return total if self.m == 2 else total / (self.m - 1)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        nm, c, h, w = x.shape
        y = x.view(nm // self.m, self.m, c, h, w)
        out = torch.where(self.mask(gamma)[None, :, :, None, None], self.others_mean(y), y)
        return out.view(nm, c, h, w)

    def extra_repr(self) -> str:
        return f"m={self.m}, c={self.c}, theta={self.theta}, enabled={self.enabled}"


class NormExchange(nn.Module):
    """BN of a 3x3 conv followed by exchange, and the ℓ1 region γ̂ of Eq. 4 (appendix B).

    `sparse` (M, C) marks γ̂, the BN scaling factors under the ℓ1 penalty; `allowed` marks where
    exchange may replace a channel. Both None means a plain BN.
    """

    def __init__(self, m: int, c: int, private: bool, theta: float,
                 sparse: torch.Tensor | None, allowed: torch.Tensor | None):
        super().__init__()
        self.bn = MultiNorm(m, c, private)
        self.exchange = Exchange(m, c, theta, allowed)
        sparse = torch.zeros(m, c, dtype=torch.bool) if sparse is None else sparse
        # float (M*C,) so the penalty is one fused multiply-sum; for a shared BN γ̂ is the union
        # of the modalities' regions (there is only one γ).
        flat = sparse.reshape(-1) if private else sparse.any(0)
        self.register_buffer("l1_weight", flat.float(), persistent=False)
        self.register_buffer("sparse", sparse.clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.exchange(self.bn(x), self.bn.gamma())

    def l1(self) -> torch.Tensor:
        return (self.bn.weight.abs() * self.l1_weight).sum()
