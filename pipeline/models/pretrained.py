"""ImageNet initialisation of the multimodal encoder from a torchvision ResNet state dict.

The paper fine-tunes ImageNet-pretrained RefineNet-101/152 encoders (§4.1). Our `Encoder` keeps
torchvision's parameter names, so a single-modality checkpoint maps onto it key by key; only the
stacking differs:

  shared conv      weight (out, in, k, k)      <- the pretrained weight as is
  unshared conv    weight (M*out, in, k, k)    <- the pretrained weight tiled M times (per modality)
  private BN       γ, β, mean, var (M*C,)      <- the pretrained BN tiled M times
  shared BN        γ, β, mean, var (C,)        <- the pretrained BN as is
  num_batches_tracked (scalar)                 <- copied (it only matters with momentum=None)

so every modality starts as the same ImageNet network, as in the official code. The BN of each
bottleneck's 3x3 conv lives at `bn2.bn` (a NormExchange wraps it); it reads torchvision's `bn2`.

Two steps, so a training run never touches an unchecked file:
  prepare_resnet(src, dst, depth)  checks a downloaded file against torchvision's ResNet layout,
                                   drops the classifier `fc.*`, writes dst atomically;
  load_imagenet(model, sd_or_path) copies it into a model; every key and shape is checked before
                                   anything is written, so a mismatch leaves the model untouched.
Limits: Bottleneck ResNets only (depth 50/101/152; our encoder has no BasicBlock), 3-channel
stem, and files readable by torch.load(weights_only=True) holding a flat tensor dict.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_write
from .layers import MultiConv, MultiNorm

DEPTHS = (50, 101, 152)     # the Bottleneck ResNets torchvision ships and our Encoder builds


def _shape(t) -> tuple:
    return tuple(t.shape)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """torch.load(weights_only=True) of a flat {name: tensor} dict, else a one-line ValueError."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # the unpickler's own messages span many lines
        raise ValueError(f"{path}: not a weights-only torch file ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        kind = type(sd).__name__
        keys = list(sd)[:5] if isinstance(sd, Mapping) else []
        raise ValueError(f"{path}: expected a flat state dict of tensors, found {kind} {keys}")
    return dict(sd)


def check_state_dict(found: Mapping[str, torch.Tensor], expected: Mapping[str, tuple],
                     source: str, optional: tuple[str, ...] = ()) -> None:
    """Exact key and shape match, else a one-line ValueError naming the first bad key.

    `expected` maps names to shapes. Keys ending in one of `optional` may be missing. Order:
    missing or mis-shaped keys in `expected` order, then unexpected keys in file order.
    """
    for key, shape in expected.items():
        if key not in found:
            if optional and key.endswith(optional):
                continue
            raise ValueError(f"{source}: missing key {key!r} (expected shape {tuple(shape)})")
        if _shape(found[key]) != tuple(shape):
            raise ValueError(f"{source}: key {key!r} has shape {_shape(found[key])}, "
                             f"expected {tuple(shape)}")
    for key in found:
        if key not in expected:
            raise ValueError(f"{source}: unexpected key {key!r} (shape {_shape(found[key])})")


def _torchvision_resnet(depth: int) -> nn.Module:
    """torchvision's ResNet on the meta device: its layout without allocating or initialising."""
    import torchvision
    if depth not in DEPTHS:
        raise ValueError(f"ResNet depth must be one of {DEPTHS} (Bottleneck), got {depth}")
    with torch.device("meta"):
        return getattr(torchvision.models, f"resnet{depth}")(weights=None)


def prepare_resnet(src: str | Path, dst: str | Path, depth: int) -> dict:
    """Check a torchvision ImageNet ResNet-`depth` file, drop `fc.*`, write the rest to dst.

    Keys and shapes must be exactly those of torchvision.models.resnet{depth}().state_dict(),
    except that `num_batches_tracked` buffers may be absent (files saved before torchvision had
    them): they are written as 0. Returns {"depth", "tensors", "parameters"} of what was written.
    """
    ref = _torchvision_resnet(depth)
    expected = {k: _shape(v) for k, v in ref.state_dict().items()}
    sd = load_state_dict_file(src)
    check_state_dict(sd, expected, f"{src} (torchvision resnet{depth})",
                     optional=("num_batches_tracked",))
    params = {k for k, _ in ref.named_parameters()}
    out = {}
    for key in expected:
        if key.startswith("fc."):
            continue                         # the ImageNet classifier: no place in the encoder
        out[key] = sd[key].clone() if key in sd else torch.tensor(0, dtype=torch.long)
    atomic_write(dst, lambda p: torch.save(out, p))
    return {"depth": depth, "tensors": len(out),
            "parameters": sum(v.numel() for k, v in out.items() if k in params)}


def _targets(encoder: nn.Module):
    """(torchvision key, our tensor, copies) for every tensor of the encoder's state dict.

    copies = how many modality copies our tensor stacks along dim 0 (None: a scalar counter).
    """
    for name, mod in encoder.named_modules():
        if isinstance(mod, MultiConv):
            copies = 1 if mod.shared else mod.m
            yield f"{name}.weight", mod.weight, copies
            if mod.bias is not None:
                yield f"{name}.bias", mod.bias, copies
        elif isinstance(mod, MultiNorm):
            tv = name.removesuffix(".bn")    # NormExchange.bn <- torchvision's plain BN
            copies = mod.m if mod.private else 1
            for attr in ("weight", "bias", "running_mean", "running_var"):
                yield f"{tv}.{attr}", getattr(mod, attr), copies
            yield f"{tv}.num_batches_tracked", mod.num_batches_tracked, None


def load_imagenet(model_or_encoder: nn.Module, state_dict: Mapping[str, torch.Tensor] | str | Path
                  ) -> None:
    """Initialise every modality of the encoder from one single-modality ResNet state dict.

    Accepts a CENSegNet (its .encoder is used) or an Encoder, and a state dict or a file path
    (as written by prepare_resnet). `fc.*` keys are ignored; any other missing, unexpected or
    mis-shaped key (wrong depth or width) raises a one-line ValueError before anything is copied.
    `num_batches_tracked` may be absent (left unchanged). The decoder and α are not touched.
    """
    encoder = getattr(model_or_encoder, "encoder", model_or_encoder)
    if isinstance(state_dict, (str, Path)):
        state_dict = load_state_dict_file(state_dict)
    sd = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    targets = list(_targets(encoder))
    # The shape the single-modality tensor must have: ours with the modality copies removed.
    expected = {k: (_shape(t) if c is None else (t.shape[0] // c, *t.shape[1:]))
                for k, t, c in targets}
    layers = tuple(len(getattr(encoder, f"layer{i}")) for i in range(1, 5))
    width = encoder.conv1.cout
    check_state_dict(sd, expected, f"ImageNet state dict vs encoder (layers {layers}, "
                     f"width {width})", optional=("num_batches_tracked",))
    covered = {id(t) for _, t, _ in targets}
    missed = [k for k, t in encoder.state_dict(keep_vars=True).items() if id(t) not in covered]
    if missed:   # a new layer type this mapping does not know about: fail loudly, not silently
        raise RuntimeError(f"load_imagenet does not know how to initialise {missed[0]!r}")
    with torch.no_grad():
        for key, ours, copies in targets:
            if key not in sd:
                continue
            src = sd[key].to(device=ours.device, dtype=ours.dtype)
            ours.copy_(src if copies is None else src.repeat(copies, *[1] * (src.dim() - 1)))
