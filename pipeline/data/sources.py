"""Every external file the paper-scale pipeline needs, as data: where it comes from, how big it
is, what its bytes hash to, and under which terms it may be used.

A download stage fetches one artefact into RAW_DIR/<filename> (pipeline.data.download). A
params key `sources.mirrors.<name>` replaces the URLs (a mirror, an intranet copy, a file://
path), and a file placed by hand at RAW_DIR/<filename> is verified instead of downloaded.
Where no checksum is published, the first verified download's sha256 is recorded in LOCK_FILE
(committed) and every later copy must match it.

Facts behind the table: ../shared/notes/data-sources.md. Published sizes/checksums are only
filled in where a source states them; `sha256` may be a prefix (torchvision and pytorch-fid
put the first 8 hex digits of the sha256 in the file name).
"""
from __future__ import annotations

from dataclasses import dataclass

RAW_DIR = "data/raw"
LOCK_FILE = "sources.lock"


@dataclass(frozen=True)
class Artefact:
    name: str                 # key in params (sources.mirrors.<name>) and in the lock file
    group: str                # nyudv2 | sunrgbd | taskonomy | weights
    filename: str             # path under RAW_DIR
    urls: tuple[str, ...]     # tried in order: the primary host first, then known mirrors
    licence: str              # where the terms of use are stated
    size: int | None = None   # bytes, where published
    sha256: str | None = None  # full hex digest or a published prefix; None: trust on first use
    note: str = ""

    @property
    def path(self) -> str:
        return f"{RAW_DIR}/{self.filename}"


NYU_TERMS = "https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html"
SUN_TERMS = "https://rgbd.cs.princeton.edu/"
TASKONOMY_TERMS = "https://github.com/StanfordVL/taskonomy/tree/master/data"
CEN_REPO = "https://raw.githubusercontent.com/yikaiw/CEN/master"
TORCHVISION_TERMS = "https://github.com/pytorch/vision/blob/main/LICENSE"
FID_TERMS = "https://github.com/mseitzer/pytorch-fid/blob/master/LICENSE"

ARTEFACTS: tuple[Artefact, ...] = (
    Artefact(
        "nyudv2_labeled", "nyudv2", "nyudv2/nyu_depth_v2_labeled.mat",
        ("http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat",),
        NYU_TERMS,
        note="MATLAB v7.3 (HDF5), about 2.8 GB; 1,449 aligned RGB-D frames with 894-class labels. "
             "The host is often slow or down: use a mirror or place the file by hand."),
    Artefact(
        "nyudv2_splits", "nyudv2", "nyudv2/splits.mat",
        ("http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat",
         "https://raw.githubusercontent.com/VainF/nyuv2-python-toolkit/master/splits.mat"),
        NYU_TERMS, size=2626,
        sha256="6e081404491a8bfba2f066beaa9713ef6046f9007aa5f799f2a350506a580cee",
        note="trainNdxs (795) / testNdxs (654), 1-based indices into the labeled set"),
    Artefact(
        "nyudv2_classmap40", "nyudv2", "nyudv2/classMapping40.mat",
        ("https://raw.githubusercontent.com/VainF/nyuv2-python-toolkit/master/classMapping40.mat",),
        "https://github.com/s-gupta/rgbd", size=10474,
        sha256="ff177194cce9a2163517f1e1e6f1c64c50987162f542dedddc04bbf6ebe6d851",
        note="Gupta et al. (CVPR 2013) 894 -> 40 class map: mapClass (1x894), className"),
    Artefact(
        "sunrgbd_images", "sunrgbd", "sunrgbd/SUNRGBD.zip",
        ("http://rgbd.cs.princeton.edu/data/SUNRGBD.zip",),
        SUN_TERMS, note="about 6.5 GB: 10,335 RGB-D frames from four sensors"),
    Artefact(
        "sunrgbd_toolbox", "sunrgbd", "sunrgbd/SUNRGBDtoolbox.zip",
        ("http://rgbd.cs.princeton.edu/data/SUNRGBDtoolbox.zip",),
        SUN_TERMS,
        note="traintestSUNRGBD/allsplit.mat (5,285 / 5,050), Metadata/SUNRGBDMeta.mat, "
             "Metadata/SUNRGBD2Dseg.mat (37-class labels)"),
    Artefact(
        "taskonomy_sample", "taskonomy", "taskonomy/taskonomy-sample-model-1.zip",
        ("https://github.com/alexsax/taskonomy-sample-model-1/archive/refs/heads/master.zip",),
        TASKONOMY_TERMS,
        note="one building, 512x512 PNGs per domain: "
             "<domain>/point_<P>_view_<V>_domain_<domain>.png"),
    Artefact(
        "taskonomy_train_views", "taskonomy", "taskonomy/train_domain.txt",
        (f"{CEN_REPO}/image2image_translation/data/train_domain.txt",),
        "https://github.com/yikaiw/CEN/blob/master/LICENSE",
        note="the official code's 1,000 training views"),
    Artefact(
        "taskonomy_val_views", "taskonomy", "taskonomy/val_domain.txt",
        (f"{CEN_REPO}/image2image_translation/data/val_domain.txt",),
        "https://github.com/yikaiw/CEN/blob/master/LICENSE",
        note="the official code's 500 validation views (points disjoint from training)"),
    Artefact(
        "resnet101_imagenet", "weights", "weights/resnet101-63fe2227.pth",
        ("https://download.pytorch.org/models/resnet101-63fe2227.pth",),
        TORCHVISION_TERMS, sha256="63fe2227",
        note="torchvision ResNet101_Weights.IMAGENET1K_V1"),
    Artefact(
        "resnet152_imagenet", "weights", "weights/resnet152-394f9c45.pth",
        ("https://download.pytorch.org/models/resnet152-394f9c45.pth",),
        TORCHVISION_TERMS, sha256="394f9c45",
        note="torchvision ResNet152_Weights.IMAGENET1K_V1"),
    Artefact(
        "fid_inception", "weights", "weights/pt_inception-2015-12-05-6726825d.pth",
        ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
         "pt_inception-2015-12-05-6726825d.pth",),
        FID_TERMS, sha256="6726825d",
        note="the TF 2015-12-05 Inception-v3 ported by pytorch-fid (not torchvision's weights)"),
)

BY_NAME = {a.name: a for a in ARTEFACTS}
GROUPS = tuple(dict.fromkeys(a.group for a in ARTEFACTS))


def get_artefact(name: str) -> Artefact:
    if name not in BY_NAME:
        raise KeyError(f"unknown artefact {name!r}; accepted: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def in_group(group: str) -> tuple[Artefact, ...]:
    if group not in GROUPS:
        raise KeyError(f"unknown artefact group {group!r}; accepted: {', '.join(GROUPS)}")
    return tuple(a for a in ARTEFACTS if a.group == group)
