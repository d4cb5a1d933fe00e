"""Prepare stages: verified raw files (data/raw/) -> data/<dataset> or data/weights/<name>.pt.

Each input is verified again here (size and sha256 against sources.py or sources.lock) before
it is read: the download stage checked it, but a file swapped by hand since then must not
reach a dataset. The mini and smoke profiles never come here.
"""
from __future__ import annotations

from pathlib import Path

from .download import ChecksumLock, verify
from .sources import LOCK_FILE, get_artefact

DATASETS = {"nyudv2": ("nyudv2_labeled", "nyudv2_splits", "nyudv2_classmap40"),
            "sunrgbd": ("sunrgbd_images", "sunrgbd_toolbox"),
            "taskonomy": ("taskonomy_sample", "taskonomy_train_views", "taskonomy_val_views")}
WEIGHTS = {"resnet101": "resnet101_imagenet", "resnet152": "resnet152_imagenet",
           "fid_inception": "fid_inception"}


def verified(name: str, lock_path: str = LOCK_FILE) -> str:
    """Path of artefact `name` under data/raw/, after checking its bytes."""
    a = get_artefact(name)
    if not Path(a.path).is_file():
        raise FileNotFoundError(f"{a.path} not found: run `dvc repro data/dvc.yaml:download_{name}`"
                                f" or place the file there by hand")
    verify(a, a.path, ChecksumLock(lock_path))
    return a.path


def prepare_dataset(dataset: str, options, data_dir: str = "data", progress: bool = True) -> dict:
    paths = [verified(n) for n in DATASETS[dataset]]
    out = str(Path(data_dir) / dataset)
    if dataset == "nyudv2":
        from . import nyudv2
        return nyudv2.prepare(*paths, out, crop=options.crop, depth=options.depth,
                              val_fraction=options.val_fraction, seed=options.seed, progress=progress)
    if dataset == "sunrgbd":
        from . import sunrgbd
        return sunrgbd.prepare(*paths, out, depth=options.depth, val_fraction=options.val_fraction,
                               seed=options.seed, progress=progress)
    if dataset == "taskonomy":
        from . import taskonomy
        return taskonomy.prepare(*paths, out, domains=tuple(options.domains), progress=progress)
    raise ValueError(f"unknown dataset {dataset!r}; accepted: {', '.join(DATASETS)}")


def prepare_weights(name: str, weights_dir: str = "data/weights") -> dict:
    src = verified(WEIGHTS[name])
    dst = str(Path(weights_dir) / f"{name}.pt")
    if name.startswith("resnet"):
        from ..models.pretrained import prepare_resnet
        return prepare_resnet(src, dst, depth=int(name.removeprefix("resnet")))
    if name == "fid_inception":
        from ..metrics.fid import prepare_fid_inception
        return prepare_fid_inception(src, dst)
    raise ValueError(f"unknown weights {name!r}; accepted: {', '.join(WEIGHTS)}")
