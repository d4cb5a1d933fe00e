"""Prepare the paper's Taskonomy subset (image translation, CEN §4.2) into the common format.

Inputs: the GitHub archive zip of alexsax/taskonomy-sample-model-1 (one building, 512x512 PNGs
`<top>/<domain>/point_<P>_view_<V>_domain_<domain>.png`) and the official CEN code's two view
lists (1,000 train / 500 val views, disjoint points). PNGs are read straight from the zip, so the
multi-GB archive never has to be extracted.

Values are kept as the dataset stores them (lossless), except depth, which becomes float32
metres like every other depth of the pipeline. The official code's display scalings (what the
translation networks actually see) are recorded in meta["scalings"] for the translation stage.
"""

import os
import re
import struct
import zipfile

import numpy as np
from PIL import Image

from .download import sha256_file
from .format import MODALITIES, DatasetWriter

DOMAINS = ("rgb", "normal", "reshading", "depth_euclidean", "depth_zbuffer",
           "principal_curvature", "edge_occlusion", "edge_texture")
assert all(d in MODALITIES for d in DOMAINS)  # format.py must know how to store every domain

DEPTH_UNITS_PER_M = 512.0     # Taskonomy depth PNGs: uint16 in 1/512 m (max 128 m)
DEPTH_SATURATED = 65535       # no geometry / beyond range -> written as 0, our "no reading"

# PNG storage each domain may have, as (bit depth, colour type) -> name used in errors. Checked
# on the PNG header itself: Pillow silently truncates 16-bit RGB to 8 bits, so its mode alone
# could hide a lossy read.
_PNG_KINDS = {(8, 0): "L", (16, 0): "I;16", (8, 2): "RGB", (8, 6): "RGBA", (8, 3): "P",
              (8, 4): "LA", (16, 2): "RGB;16", (16, 6): "RGBA;16", (16, 4): "LA;16"}
_EXPECTED = {
    "rgb": ("RGB", "RGBA"),                      # alpha, if any, is dropped
    "normal": ("RGB",),
    "principal_curvature": ("RGB",),
    "reshading": ("L", "RGB", "RGBA"),           # grey; 3-channel copies must be equal
    "depth_euclidean": ("I;16",),
    "depth_zbuffer": ("I;16",),
    "edge_occlusion": ("I;16",),
    "edge_texture": ("I;16",),
}

# The official code's maps from stored values to 0..255 display range (then [-1, 1]). Depth's
# log is taken of the RAW 1/512 m value (log(1 + 65535) = 11.09 ~ 11.1), so a stage working on
# our metres must multiply by raw_per_metre first. Difference: the official code shows the
# saturated value 65535 as ~255 (far); we store it as 0, so it displays as 0.
_SCALINGS = {
    "edge_texture": {"op": "linear", "scale": 255.0 / 11355.0,
                     "formula": "display = stored_uint16 * 255 / 11355"},
    "edge_occlusion": {"op": "linear", "scale": 255.0 / 11584.0,
                       "formula": "display = stored_uint16 * 255 / 11584"},
}
for _d in ("depth_euclidean", "depth_zbuffer"):
    _SCALINGS[_d] = {"op": "log1p", "raw_per_metre": DEPTH_UNITS_PER_M, "scale": 255.0 / 11.1,
                     "formula": "display = log(1 + metres * 512) * 255 / 11.1 (0 = no reading)"}

_VIEW = re.compile(r"point_(\d+)_view_(\d+)")
_MEMBER = re.compile(r"^((?:.*/)?)([a-z_]+)/(point_\d+_view_\d+)_domain_\2\.png$")


def _read_list(path: str) -> list[str]:
    """View ids `point_<P>_view_<V>` of a list file, in file order. The official lists' exact
    line format is unknown to us, so anything around the id (a domain suffix, an extension, a
    folder) is ignored; a line without an id is an error rather than silently dropped."""
    views: dict[str, int] = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            m = _VIEW.search(line)
            if m is None:
                raise ValueError(f"{path}:{n}: no 'point_<P>_view_<V>' in {line.strip()!r}")
            view = m.group(0)
            if view in views:
                raise ValueError(f"{path}:{n}: {view} already listed on line {views[view]}")
            views[view] = n
    if not views:
        raise ValueError(f"{path}: no views listed")
    return list(views)


def _point(view: str) -> str:
    return _VIEW.match(view).group(1)


def _png_header(data: bytes, member: str) -> tuple[str, int, int]:
    """(kind, height, width) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError(f"{member}: not a PNG file")
    width, height, depth, ctype = struct.unpack(">IIBB", data[16:26])
    return _PNG_KINDS.get((depth, ctype), f"{depth}-bit colour type {ctype}"), height, width


def _find_top(names: list[str]) -> str:
    """The folder holding the domain folders (GitHub names it <repo>-<branch or sha>/)."""
    tops = {m.group(1) for m in map(_MEMBER.match, names) if m and m.group(2) in DOMAINS}
    if len(tops) != 1:
        found = ", ".join(repr(t) for t in sorted(tops)) or "none"
        raise ValueError(f"expected the Taskonomy domain folders under one top folder; found {found}")
    return tops.pop()


def _convert(domain: str, a: np.ndarray, member: str) -> np.ndarray:
    """Decoded PNG -> the array stored in the common format (MODALITIES[domain])."""
    if domain.startswith(("depth_", "edge_")):
        if a.dtype != np.uint16:            # older Pillow opens 16-bit grey as "I" (int32)
            a = a.astype(np.uint16)
        if domain.startswith("depth_"):     # v / 512 is exact in float32 (v < 2**16)
            return np.where(a == DEPTH_SATURATED, 0.0, a / DEPTH_UNITS_PER_M).astype(np.float32)
        return a                            # edges: raw uint16, lossless
    if a.ndim == 3 and domain in ("rgb", "reshading"):
        a = a[:, :, :3]                     # drop alpha
    if domain == "reshading" and a.ndim == 3:
        if not ((a[:, :, 0] == a[:, :, 1]).all() and (a[:, :, 0] == a[:, :, 2]).all()):
            raise ValueError(f"{member}: reshading stored as RGB with unequal channels; expected grey")
        a = a[:, :, 0]
    return a


def prepare(sample_zip: str, train_list: str, val_list: str, out_root: str, *,
            domains: tuple[str, ...] = DOMAINS, progress: bool = True) -> dict:
    """Write the listed views of `domains` from the archive to `out_root`; returns the meta."""
    domains = tuple(domains)
    bad = [d for d in domains if d not in DOMAINS]
    if bad or not domains or len(set(domains)) != len(domains):
        raise ValueError(f"domains {list(domains)}: need distinct names from {', '.join(DOMAINS)}")
    train, val = _read_list(train_list), _read_list(val_list)
    # The paper's protocol: val views come from points never seen in training.
    train_points = {_point(v): v for v in train}
    shared = [v for v in val if _point(v) in train_points]
    if shared:
        p = _point(shared[0])
        raise ValueError(f"train and val lists share {len({_point(v) for v in shared})} point(s), "
                         f"e.g. point {p} (train {train_points[p]}, val {shared[0]}); "
                         f"points must be disjoint")
    views = train + val
    archive = os.path.basename(sample_zip)

    with zipfile.ZipFile(sample_zip) as zf:
        names = zf.namelist()
        top = _find_top(names)
        present = set(names)

        def member(view: str, d: str) -> str:
            return f"{top}{d}/{view}_domain_{d}.png"

        # Validate everything that is cheap to know (presence, PNG kind, size) before writing a
        # single file: a 12,000-PNG write should not fail on its last view.
        for view in views:
            for d in domains:
                if member(view, d) not in present:
                    raise ValueError(f"{archive}: member {member(view, d)} is missing")
        size = None
        for view in views:
            for d in domains:
                name = member(view, d)
                with zf.open(name) as f:
                    kind, h, w = _png_header(f.read(26), f"{archive}:{name}")
                if kind not in _EXPECTED[d]:
                    raise ValueError(f"{archive}:{name}: PNG mode {kind}, expected "
                                     f"{' or '.join(_EXPECTED[d])}")
                if size is None:
                    size = (h, w)
                elif (h, w) != size:
                    raise ValueError(f"{archive}:{name}: size {h}x{w}, others are {size[0]}x{size[1]}")

        it = views
        if progress:
            from tqdm import tqdm
            it = tqdm(views, desc="taskonomy", unit="view")
        with DatasetWriter(out_root) as w:
            for view in it:
                arrays = {}
                for d in domains:
                    name = member(view, d)
                    with zf.open(name) as f, Image.open(f) as im:
                        arrays[d] = _convert(d, np.array(im), f"{archive}:{name}")
                w.write_sample(view, arrays, None)   # no segmentation labels in this task
            meta = {
                "name": "taskonomy",
                "classes": [],
                "height": size[0],
                "width": size[1],
                "source": {
                    "archive": archive,
                    "archive_top": top,
                    # GitHub stores the commit sha as the archive's zip comment.
                    "archive_comment": zf.comment.decode("utf-8", "replace"),
                    "train_list": os.path.basename(train_list),
                    "train_list_sha256": sha256_file(train_list),
                    "val_list": os.path.basename(val_list),
                    "val_list_sha256": sha256_file(val_list),
                    "domains": list(domains),
                    "depth": "uint16 1/512 m -> float32 metres; 65535 (saturated) -> 0",
                },
                "scalings": {d: _SCALINGS[d] for d in domains if d in _SCALINGS},
            }
            return w.finish(meta, {"train": train, "val": val})

