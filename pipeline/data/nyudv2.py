"""NYUDv2 (40 classes, 795 train / 654 test) into the common on-disk format (`format`).

Inputs, as published (facts: ../shared/notes/data-sources.md):
  * nyu_depth_v2_labeled.mat: MATLAB v7.3 = HDF5. MATLAB is column-major, so h5py shows every
    array with its axes reversed: images (N, 3, W, H) uint8, depths (inpainted) and rawDepths
    (N, W, H) float32 metres (raw: 0 = no reading), labels (N, W, H) uint16 (0 = unlabeled,
    1..894); N = 1449, W x H = 640 x 480. The file is 2.8 GB, so it is read one frame at a time.
  * splits.mat (MATLAB v5): trainNdxs (795x1), testNdxs (654x1), 1-BASED frame indices.
  * classMapping40.mat (MATLAB v5, Gupta et al. 2013): mapClass (1x894) with values 1..40 and
    className (1x40 cell). label40 = [0, mapClass][label894]; stored label = label40 - 1 with
    unlabeled -> IGNORE_INDEX.

Samples are named %06d by their 1-based frame index, as the official CEN/RefineNet data names
its files. The paper's data has no validation split: it is carved out of trainNdxs, so that
checkpoints are never selected on test. Depth is written as float32 metres (a lossless TIFF).
"""
from __future__ import annotations

import os

import h5py
import numpy as np
import scipy.io
from tqdm import tqdm

from .format import IGNORE_INDEX, DatasetWriter, carve_validation

DEPTH_KEYS = {"inpainted": "depths", "raw": "rawDepths"}


def _loadmat(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: not found; expected the {what}")
    try:
        return scipy.io.loadmat(path, squeeze_me=True)
    except (NotImplementedError, ValueError, TypeError, OSError) as e:
        raise ValueError(f"{path}: not a readable MATLAB v5 file ({type(e).__name__}); "
                         f"accepted: the {what} as published") from None


def _key(mat: dict, path: str, key: str, accepted: str):
    if key not in mat:
        keys = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise ValueError(f"{path}: missing key {key!r} (keys: {keys}); accepted: {accepted}")
    return mat[key]


def _indices(a, path: str, key: str, n_frames: int) -> list[int]:
    """A split list as Python ints, checked to be distinct 1-based frame indices."""
    a = np.atleast_1d(np.asarray(a))
    if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.number) \
            or not np.all(a == np.round(a)):
        raise ValueError(f"{path}: {key} has dtype {a.dtype} shape {a.shape}; "
                         f"accepted: a non-empty Kx1 list of integer frame indices")
    idx = a.astype(np.int64)
    bad = idx[(idx < 1) | (idx > n_frames)]
    if bad.size:
        raise ValueError(f"{path}: {key} holds index {int(bad[0])} outside 1..{n_frames} "
                         f"(indices are 1-based into the {n_frames} labeled frames)")
    if len(set(idx.tolist())) != idx.size:
        raise ValueError(f"{path}: {key} lists a frame index more than once")
    return idx.tolist()


def _check_crop(crop, h: int, w: int) -> tuple[int, int, int, int] | None:
    if crop is None:
        return None
    if len(crop) != 4 or not all(isinstance(c, (int, np.integer)) for c in crop):
        raise ValueError(f"crop {crop!r} is invalid; accepted: None or (top, bottom, left, right) ints")
    t, b, l, r = (int(c) for c in crop)
    if not (0 <= t < b <= h and 0 <= l < r <= w):
        raise ValueError(f"crop {crop!r} does not fit the {h}x{w} frames; accepted: "
                         f"0 <= top < bottom <= {h}, 0 <= left < right <= {w} (half-open)")
    return t, b, l, r


def _check_labeled(f: h5py.File, path: str, depth_key: str) -> tuple[int, int, int]:
    """(N, H, W) of the labeled file, after checking keys, shapes and dtypes agree."""
    want = {"images": "uint8 (N, 3, W, H)", depth_key: "float32 (N, W, H)",
            "labels": "uint16 (N, W, H)"}
    for key, accepted in want.items():
        if key not in f or not isinstance(f[key], h5py.Dataset):
            raise ValueError(f"{path}: missing dataset {key!r} (keys: {', '.join(f.keys()) or 'none'}); "
                             f"accepted: nyu_depth_v2_labeled.mat with images, depths, rawDepths, labels")
    img = f["images"]
    if img.ndim != 4 or img.shape[1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"{path}: images has dtype {img.dtype} shape {img.shape}; "
                         f"accepted: {want['images']} (h5py shows MATLAB's axes reversed)")
    n, _, w, h = img.shape
    for key, dtype in ((depth_key, np.float32), ("labels", np.uint16)):
        d = f[key]
        if d.shape != (n, w, h) or d.dtype != dtype:
            raise ValueError(f"{path}: {key} has dtype {d.dtype} shape {d.shape}; "
                             f"accepted: {np.dtype(dtype)} {(n, w, h)} like images")
    return n, h, w


def prepare(labeled_mat: str, splits_mat: str, classmap_mat: str, out_root: str, *,
            crop: tuple[int, int, int, int] | None, depth: str = "inpainted",
            val_fraction: float, seed: int, progress: bool = True) -> dict:
    """Write NYUDv2 (rgb, depth in metres, 40-class label) to `out_root`; returns its meta."""
    if depth not in DEPTH_KEYS:
        raise ValueError(f"depth {depth!r} is invalid; accepted: {', '.join(DEPTH_KEYS)}")
    depth_key = DEPTH_KEYS[depth]

    # Everything is validated before the first sample is written.
    cm = _loadmat(classmap_mat, "40-class map classMapping40.mat")
    names = [str(s) for s in np.atleast_1d(_key(cm, classmap_mat, "className", "className (1x40 cell)"))]
    map_class = np.atleast_1d(_key(cm, classmap_mat, "mapClass", "mapClass (1x894, values 1..40)"))
    if map_class.ndim != 1 or not np.issubdtype(map_class.dtype, np.number) \
            or not np.all(map_class == np.round(map_class)) \
            or map_class.min() < 1 or map_class.max() > len(names):
        raise ValueError(f"{classmap_mat}: mapClass has dtype {map_class.dtype} shape {map_class.shape} "
                         f"values outside 1..{len(names)}; accepted: 1xK integers in 1..{len(names)} "
                         f"(1..len(className))")
    # Lookup table from the 894-class label to the stored one: 0 (unlabeled) -> ignore,
    # k -> mapClass[k] - 1 (the 40 classes become 0..39).
    lut = np.concatenate([[IGNORE_INDEX], map_class.astype(np.int64) - 1]).astype(np.uint8)

    if not os.path.isfile(labeled_mat):
        raise FileNotFoundError(f"{labeled_mat}: not found; expected nyu_depth_v2_labeled.mat")
    try:
        f = h5py.File(labeled_mat, "r")
    except OSError:
        raise ValueError(f"{labeled_mat}: not an HDF5 file; accepted: nyu_depth_v2_labeled.mat "
                         f"(MATLAB v7.3 = HDF5)") from None
    with f:
        n, h, w = _check_labeled(f, labeled_mat, depth_key)
        box = _check_crop(crop, h, w)
        sp = _loadmat(splits_mat, "split file splits.mat")
        train_idx = _indices(_key(sp, splits_mat, "trainNdxs", "trainNdxs (795x1)"), splits_mat, "trainNdxs", n)
        test_idx = _indices(_key(sp, splits_mat, "testNdxs", "testNdxs (654x1)"), splits_mat, "testNdxs", n)
        both = sorted(set(train_idx) & set(test_idx))
        if both:
            raise ValueError(f"{splits_mat}: frame {both[0]} is in both trainNdxs and testNdxs "
                             f"({len(both)} overlap); accepted: disjoint splits")
        t, b, l, r = box if box is not None else (0, h, 0, w)
        sid = "{:06d}".format
        with DatasetWriter(out_root) as wr:
            # Ascending index order reads the HDF5 file front to back.
            for i in tqdm(sorted(train_idx + test_idx), desc="nyudv2", unit="frame", disable=not progress):
                k = i - 1  # 1-based index -> h5py row
                rgb = f["images"][k].transpose(2, 1, 0)      # (3, W, H) -> (H, W, 3)
                d = f[depth_key][k].T                        # (W, H) -> (H, W), metres
                lab = f["labels"][k].T
                if lab.max() >= lut.size:
                    raise ValueError(f"{labeled_mat}: labels of frame {i} hold class {int(lab.max())}, "
                                     f"but mapClass maps only 1..{lut.size - 1}")
                wr.write_sample(sid(i), {"rgb": rgb[t:b, l:r], "depth": d[t:b, l:r].astype(np.float32)},
                                lut[lab[t:b, l:r]])
            train, val = carve_validation([sid(i) for i in train_idx], val_fraction, seed)
            meta = wr.finish(
                {"name": "nyudv2", "classes": names, "height": b - t, "width": r - l,
                 "source": {"labeled": os.path.basename(labeled_mat),
                            "splits": os.path.basename(splits_mat),
                            "class_mapping": os.path.basename(classmap_mat),
                            "depth": depth, "depth_key": depth_key, "depth_unit": "m",
                            "crop": list(box) if box is not None else None,
                            "frame_size": [h, w], "frames": n, "index_base": 1,
                            "id_format": "%06d of the 1-based frame index",
                            "official_split": {"train": len(train_idx), "test": len(test_idx)},
                            "val_fraction": val_fraction, "seed": seed}},
                {"train": train, "val": val, "test": [sid(i) for i in test_idx]})
    return meta
