"""Device choice: CUDA when present, else CPU (no flag needed; CEN_DEVICE overrides)."""
from __future__ import annotations

import os

import torch


def pick_device() -> torch.device:
    forced = os.environ.get("CEN_DEVICE")
    if forced:
        if forced not in ("cpu", "cuda") and not forced.startswith("cuda:"):
            raise ValueError(f"CEN_DEVICE={forced!r} is invalid; accepted: cpu, cuda, cuda:N")
        if forced.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"CEN_DEVICE={forced!r} but no CUDA device is available; accepted: cpu")
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
