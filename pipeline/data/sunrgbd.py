"""SUN RGB-D (37 classes, 5,285 train / 5,050 test) into the common on-disk format (`format`).

Read straight from the two published zips (SUNRGBD.zip is 6.5 GB: it is never extracted; only
the four toolbox files below are copied out, to a temporary folder next to out_root, because
h5py and scipy need seekable files). Verified facts (public prepare scripts that read the real
files: TUI-NICR ESANet src/datasets/sunrgbd/prepare_dataset.py and nicr-scene-analysis-datasets,
votenet sunrgbd/matlab/extract_split.m, the toolbox's own readme and read3dPoints.m):

  * SUNRGBDtoolbox.zip holds SUNRGBDtoolbox/...:
    - traintestSUNRGBD/allsplit.mat, MATLAB v5: cells `alltrain` (5,285) and `alltest` (5,050) of
      scene folders such as '/n/fs/sun3d/data/SUNRGBD/kv2/kinect2data/000002_..._rgbf000103-resize'
      (it also holds `trainvalsplit`, an official train/val division of alltrain: not used, the
      validation split is carved with format.carve_validation like every dataset here).
    - Metadata/SUNRGBDMeta.mat, MATLAB v5 (scipy.io.loadmat reads it; NOT v7.3): struct array
      `SUNRGBDMeta`, one entry per image (10,335), in the same order as the labels. Fields used:
      `rgbpath` ('/n/fs/sun3d/data/SUNRGBD/<sensor>/.../<scene>/image/<rgbname>': its scene folder
      is what alltrain/alltest list, and how the public scripts assign images to splits),
      `rgbname` and `depthname` (file names inside image/, depth/, depth_bfx/). (`sequenceName`,
      'SUNRGBD/<sensor>/.../<scene>' relative to the zip root, names the same folder.)
    - Metadata/SUNRGBD2Dseg.mat, MATLAB v7.3 = HDF5: f['SUNRGBD2Dseg']['seglabel'] holds one object
      reference per image; f[ref] is the label map with MATLAB's axes reversed (W, H), 0 = void,
      1..37 indexing `seg37list`.
    - Metadata/seg37list.mat, MATLAB v5: `seg37list`, the 37 class names (wall, floor, ...).
  * SUNRGBD.zip holds SUNRGBD/<sensor>/.../<scene>/ with image/<rgbname> (jpg), depth/<depthname>
    (raw) and depth_bfx/<depthname> (refined) 16-bit PNGs.
  * Depth decoding (read3dPoints.m): rotate the 16 bits right by 3, /1000 -> metres, values above
    8 m set to 8 m. (TUI-NICR instead shift right by 3 and clip at 8 m; the two differ only where
    the low 3 bits are set, which the toolbox turns into >= 8.192 m, i.e. 8 m after the clip.)
  * Image sizes differ between sensors (Kinect v1/v2, Xtion, RealSense); every image is written at
    its native size, meta height/width are null when sizes vary and meta source.sizes lists them.

Samples are named %06d by their 1-based index into SUNRGBDMeta / seglabel; labels are stored as
seglabel - 1 with void -> IGNORE_INDEX; depth as float32 metres.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from collections import Counter

import h5py
import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

from .format import IGNORE_INDEX, DatasetWriter, carve_validation

DEPTH_DIRS = {"refined": "depth_bfx", "raw": "depth"}
TOOLBOX_FILES = {"split": "traintestSUNRGBD/allsplit.mat", "meta": "Metadata/SUNRGBDMeta.mat",
                 "seg": "Metadata/SUNRGBD2Dseg.mat", "names": "Metadata/seg37list.mat"}
MAX_DEPTH_M = 8.0
ZIP_LAYOUT = "SUNRGBD/<sensor>/.../<scene>/{image/*.jpg, depth/*.png, depth_bfx/*.png}"


def decode_depth(v: np.ndarray) -> np.ndarray:
    """SUN RGB-D 16-bit depth PNG values -> float32 metres (the toolbox's read3dPoints.m)."""
    v = v.astype(np.uint32)
    rot = ((v >> 3) | (v << 13)) & 0xFFFF               # 16-bit rotate right by 3
    return np.minimum(rot.astype(np.float32) / np.float32(1000), np.float32(MAX_DEPTH_M))


def scene_key(path: str) -> str:
    """'/n/fs/sun3d/data/SUNRGBD/kv1/b3dodata/img_0063/' -> 'SUNRGBD/kv1/b3dodata/img_0063': the
    folder relative to the image zip's root, whatever absolute prefix the split file carries."""
    parts = [p for p in str(path).strip().split("/") if p]
    if "SUNRGBD" not in parts:
        raise ValueError(f"scene path {path!r} has no 'SUNRGBD' folder; accepted: "
                         f"[prefix/]SUNRGBD/<sensor>/.../<scene>")
    return "/".join(parts[parts.index("SUNRGBD"):])


def _toolbox_member(names: list[str], zip_path: str, suffix: str) -> str:
    hits = [n for n in names if (n == suffix or n.endswith("/" + suffix)) and not n.startswith("__MACOSX")]
    if len(hits) != 1:
        raise ValueError(f"{zip_path}: {'no' if not hits else f'{len(hits)} members named'} "
                         f"{suffix}; accepted: SUNRGBDtoolbox.zip holding "
                         f"{', '.join(TOOLBOX_FILES.values())} once each")
    return hits[0]


def _loadmat(path: str, label: str, key: str) -> object:
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False, variable_names=[key])
    except (NotImplementedError, ValueError, TypeError, OSError) as e:
        raise ValueError(f"{label}: not a readable MATLAB v5 file ({type(e).__name__}); "
                         f"accepted: the file of the published toolbox") from None
    if key not in mat:
        raise ValueError(f"{label}: missing key {key!r}; accepted: the published file with {key}")
    return mat[key]


def _strings(a, label: str) -> list[str]:
    a = np.atleast_1d(a)
    if a.ndim != 1 or not all(isinstance(s, str) for s in a):
        raise ValueError(f"{label} is not a 1xK cell of strings (got {a.dtype} {a.shape}); "
                         f"accepted: a 1xK cell of folder paths / names")
    return [str(s) for s in a]


def _read_toolbox(toolbox_zip: str, tmp: str):
    """Copy the four toolbox files to tmp and read all but the labels, which are read one image
    at a time later. Returns (scene folder, rgb name, depth name) per image, the split lists,
    the class names, and the label file's path and display name."""
    with zipfile.ZipFile(toolbox_zip) as z:
        names = z.namelist()
        paths = {}
        for k, suffix in TOOLBOX_FILES.items():
            member = _toolbox_member(names, toolbox_zip, suffix)
            paths[k] = os.path.join(tmp, os.path.basename(suffix))
            with z.open(member) as src, open(paths[k], "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 24)
    where = {k: f"{toolbox_zip}:{s}" for k, s in TOOLBOX_FILES.items()}

    split = {k: _strings(_loadmat(paths["split"], where["split"], k), f"{where['split']}: {k}")
             for k in ("alltrain", "alltest")}
    classes = _strings(_loadmat(paths["names"], where["names"], "seg37list"), f"{where['names']}: seg37list")
    meta = np.atleast_1d(_loadmat(paths["meta"], where["meta"], "SUNRGBDMeta"))
    if meta.size == 0 or not all(hasattr(meta[0], k) for k in ("rgbpath", "rgbname", "depthname")):
        raise ValueError(f"{where['meta']}: SUNRGBDMeta is empty or has no field rgbpath, rgbname or "
                         f"depthname; accepted: the published struct array with those fields")
    images = []
    for i, m in enumerate(meta):
        parts = str(m.rgbpath).split("/")
        if len(parts) < 3 or parts[-2:] != ["image", str(m.rgbname)]:
            raise ValueError(f"{where['meta']}: SUNRGBDMeta({i + 1}).rgbpath {m.rgbpath!r} does not end "
                             f"in image/{m.rgbname}; accepted: <prefix>/SUNRGBD/.../<scene>/image/<rgbname>")
        images.append((scene_key("/".join(parts[:-2])), str(m.rgbname), str(m.depthname)))
    return images, split, classes, paths["seg"], where["seg"]


def _open_labels(path: str, label: str, n: int):
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise ValueError(f"{label}: not an HDF5 file; accepted: SUNRGBD2Dseg.mat (MATLAB v7.3)") from None
    if "SUNRGBD2Dseg" not in f or "seglabel" not in f["SUNRGBD2Dseg"]:
        f.close()
        raise ValueError(f"{label}: missing SUNRGBD2Dseg/seglabel; accepted: the published "
                         f"SUNRGBD2Dseg struct with a seglabel field")
    refs = f["SUNRGBD2Dseg"]["seglabel"]
    if h5py.check_ref_dtype(refs.dtype) is None or refs.size != n or refs.ndim != 2 or 1 not in refs.shape:
        f.close()
        raise ValueError(f"{label}: SUNRGBD2Dseg/seglabel has dtype {refs.dtype} shape {refs.shape}; "
                         f"accepted: {n} object references (one per SUNRGBDMeta entry)")
    return f, refs[...].reshape(-1)


def _label(f: h5py.File, ref, label: str, i: int, n_classes: int) -> np.ndarray:
    a = f[ref][...].T                                   # MATLAB (H, W) stored as (W, H)
    if a.ndim != 2 or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)) \
            or not np.all(a == np.round(a)) or a.min() < 0 or a.max() > n_classes:
        raise ValueError(f"{label}: seglabel of image {i} has dtype {a.dtype} shape {a.shape} and values "
                         f"outside 0..{n_classes}; accepted: integer HxW maps, 0 = void, 1..{n_classes}")
    # Stored label = seglabel - 1, void (0) -> ignore.
    return np.where(a == 0, IGNORE_INDEX, a.astype(np.int64) - 1).astype(np.uint8)


def _read_png16(z: zipfile.ZipFile, member: str, label: str) -> np.ndarray:
    with Image.open(io.BytesIO(z.read(member))) as im:
        if im.mode not in ("I;16", "I;16B", "I"):
            raise ValueError(f"{label}:{member} is a {im.mode} image; accepted: a 16-bit grayscale PNG")
        return np.array(im).astype(np.uint16)


def _source(images_zip, toolbox_zip, depth, split, scenes, sizes, n_train, n_test, val_fraction, seed):
    """meta["source"]: inputs, depth choice, the sizes found and the counts checked."""
    listed = {scene_key(p) for p in split["alltrain"] + split["alltest"]}
    return {"images": os.path.basename(images_zip), "toolbox": os.path.basename(toolbox_zip),
            "depth": depth, "depth_dir": DEPTH_DIRS[depth], "depth_unit": "m", "depth_max_m": MAX_DEPTH_M,
            "sizes": [{"height": h, "width": w, "count": c} for (h, w), c in sorted(sizes.items())],
            "counts": {"images": len(scenes), "alltrain": len(split["alltrain"]),
                       "alltest": len(split["alltest"]), "train_images": n_train, "test_images": n_test,
                       "split_entries_without_image": len(listed - set(scenes))},
            "index_base": 1, "id_format": "%06d of the 1-based index into SUNRGBDMeta / seglabel",
            "val_fraction": val_fraction, "seed": seed}


def prepare(images_zip: str, toolbox_zip: str, out_root: str, *, depth: str = "refined",
            val_fraction: float, seed: int, progress: bool = True) -> dict:
    """Write SUN RGB-D (rgb, depth in metres, 37-class label) to `out_root`; returns its meta."""
    if depth not in DEPTH_DIRS:
        raise ValueError(f"depth {depth!r} is invalid; accepted: {', '.join(DEPTH_DIRS)}")
    for path, what in ((images_zip, "SUNRGBD.zip"), (toolbox_zip, "SUNRGBDtoolbox.zip")):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: not found; expected {what}")
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path}: not a zip file; accepted: {what} as published")
    ddir = DEPTH_DIRS[depth]
    sid = "{:06d}".format

    parent = os.path.dirname(os.path.abspath(out_root))
    os.makedirs(parent, exist_ok=True)
    # The toolbox files are copied next to out_root (the same disk as the output, not /tmp).
    with tempfile.TemporaryDirectory(prefix=".sunrgbd-toolbox-", dir=parent) as tmp:
        images, split, classes, seg_path, seg_label = _read_toolbox(toolbox_zip, tmp)
        scenes = [s for s, _, _ in images]
        train_set = {scene_key(p) for p in split["alltrain"]}
        test_set = {scene_key(p) for p in split["alltest"]}
        # Each image must sit in exactly one official split: one in both would leak test data
        # into training, one in neither means the metadata and the split file do not belong together.
        for i, s in enumerate(scenes):
            if (s in train_set) == (s in test_set):
                where = "both alltrain and alltest" if s in train_set else "neither alltrain nor alltest"
                raise ValueError(f"{toolbox_zip}: image {i + 1} ({s}) is in {where} of "
                                 f"{TOOLBOX_FILES['split']}; accepted: each image in exactly one")
        f, refs = _open_labels(seg_path, seg_label, len(images))
        with f, zipfile.ZipFile(images_zip) as z:
            members = set(z.namelist())
            files = [(f"{s}/image/{rgb}", f"{s}/{ddir}/{dep}") for s, rgb, dep in images]
            for i, pair in enumerate(files):   # every file is checked before anything is written
                for m in pair:
                    if m not in members:
                        raise ValueError(f"{images_zip}: missing {m} (image {i + 1} of SUNRGBDMeta); "
                                         f"accepted: SUNRGBD.zip laid out as {ZIP_LAYOUT}")
            sizes: Counter = Counter()
            with DatasetWriter(out_root) as w:
                for i in tqdm(range(len(images)), desc="sunrgbd", unit="image", disable=not progress):
                    with Image.open(io.BytesIO(z.read(files[i][0]))) as im:
                        rgb = np.array(im.convert("RGB"))
                    d = decode_depth(_read_png16(z, files[i][1], images_zip))
                    lab = _label(f, refs[i], seg_label, i + 1, len(classes))
                    if not (rgb.shape[:2] == d.shape == lab.shape):
                        raise ValueError(f"{scenes[i]}: image {rgb.shape[:2]}, {ddir} {d.shape} and seglabel "
                                         f"{lab.shape} sizes differ (image {i + 1}); accepted: one size")
                    w.write_sample(sid(i + 1), {"rgb": rgb, "depth": d}, lab)
                    sizes[lab.shape] += 1
                train_ids = [sid(i + 1) for i, s in enumerate(scenes) if s in train_set]
                test_ids = [sid(i + 1) for i, s in enumerate(scenes) if s in test_set]
                train, val = carve_validation(train_ids, val_fraction, seed)
                # One size for the whole dataset (a single sensor) or null: loaders must not assume one.
                h, wd = next(iter(sizes)) if len(sizes) == 1 else (None, None)
                source = _source(images_zip, toolbox_zip, depth, split, scenes, sizes,
                                 len(train_ids), len(test_ids), val_fraction, seed)
                meta = w.finish({"name": "sunrgbd", "classes": classes, "height": h, "width": wd,
                                 "source": source},
                                {"train": train, "val": val, "test": test_ids})
    return meta
