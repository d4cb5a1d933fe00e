"""The on-disk dataset format shared by every dataset of the pipeline.

Every dataset (the embedded synthetic scenes, NYUDv2, SUN RGB-D, Taskonomy) is prepared into
this one layout, so training and evaluation code never needs to know which dataset it reads:

    root/meta.json            name, classes, ignore_index, modalities, height, width, splits, source
    root/splits/<split>.txt   one sample id per line; split in SPLITS
    root/<modality>/<id>.png  one folder per modality present, storage as in MODALITIES
    root/<modality>/<id>.tiff float32 modalities (depth in metres from a float source)
    root/label/<id>.png       uint8 class index per pixel, IGNORE_INDEX = ignore (absent for
                              datasets without labels, e.g. Taskonomy for image translation)

PNG for integers (lossless, 16-bit capable, readable by every tool); deflate-compressed float32
TIFF where the source is float (NYUDv2 depth in metres): lossless too, where a uint16 mm PNG
would round it.
"""

import hashlib
import json
import os
import re
import shutil

import numpy as np
from PIL import Image

# Canonical modality names and how each is stored ("dtype": the accepted storage dtypes; float32
# goes to TIFF, integers to PNG). Decoders below turn them back into physics.
MODALITIES: dict[str, dict] = {
    "rgb": {"dtype": ("uint8",), "channels": 3},
    # uint16 millimetres (the Kinect convention) or float32 metres; 0 = no reading (hole, out
    # of range) either way.
    "depth": {"dtype": ("uint16", "float32"), "channels": 1, "unit_m": 0.001},
    # Camera frame (x right, y down, z forward), stored as round((n + 1) * 127.5).
    "normal": {"dtype": ("uint8",), "channels": 3},
    "shade": {"dtype": ("uint8",), "channels": 1},
    "texture": {"dtype": ("uint8",), "channels": 3},
    "edge": {"dtype": ("uint8",), "channels": 1},
    # Taskonomy domains, under the dataset's own names (pipeline.data.taskonomy): values as the
    # dataset stores them, except depths, converted from 1/512 m to float32 metres.
    "reshading": {"dtype": ("uint8",), "channels": 1},
    "depth_zbuffer": {"dtype": ("float32",), "channels": 1},
    "depth_euclidean": {"dtype": ("float32",), "channels": 1},
    "principal_curvature": {"dtype": ("uint8",), "channels": 3},
    "edge_occlusion": {"dtype": ("uint16",), "channels": 1},
    "edge_texture": {"dtype": ("uint16",), "channels": 1},
}
EXTENSIONS = {"float32": ".tiff"}   # every other storage dtype: .png
SPLITS = ("train", "val", "test")
IGNORE_INDEX = 255
LABEL = "label"  # folder name of the label maps; not a modality (never an input to a model)

_ID = re.compile(r"^[A-Za-z0-9_.-]+$")  # ids become file names: keep them portable


# ----------------------------------------------------------------------------- encoders


def encode_normal(n: np.ndarray) -> np.ndarray:
    """Unit normals (..., 3) float -> uint8 storage."""
    return np.round((np.clip(n, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def decode_normal(v: np.ndarray) -> np.ndarray:
    """uint8 storage -> float32 normals in [-1, 1] (not renormalised; quantisation error ~0.4%)."""
    return v.astype(np.float32) / 127.5 - 1.0


def depth_to_metres(d: np.ndarray) -> np.ndarray:
    """Stored depth (uint16 mm or float32 m) -> float32 metres; holes stay 0."""
    if d.dtype == np.float32:
        return d
    return d.astype(np.float32) * MODALITIES["depth"]["unit_m"]


# ----------------------------------------------------------------------------- validation


def _check_id(sample_id: str) -> None:
    if not isinstance(sample_id, str) or not _ID.match(sample_id):
        raise ValueError(f"sample id {sample_id!r} is not valid: use letters, digits, '_', '-', '.'")


def _check_modality(name: str, a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Return the array in its canonical storage shape, or raise a one-line ValueError."""
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; accepted: {', '.join(MODALITIES)}")
    spec = MODALITIES[name]
    a = np.asarray(a)
    c = spec["channels"]
    accepted = (f"{' or '.join(spec['dtype'])} HxW{'' if c == 1 else f'x{c}'}"
                + (" or HxWx1" if c == 1 else ""))
    if a.dtype.name not in spec["dtype"]:
        raise ValueError(f"modality {name!r}: got dtype {a.dtype} shape {a.shape}; accepted: {accepted}")
    if c == 1 and a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    ok = a.ndim == 2 if c == 1 else (a.ndim == 3 and a.shape[2] == c)
    if not ok:
        raise ValueError(f"modality {name!r}: got shape {a.shape} ({a.dtype}); accepted: {accepted}")
    if hw is not None and a.shape[:2] != hw:
        raise ValueError(f"modality {name!r}: got size {a.shape[:2]}, expected {hw} like the "
                         f"sample's other maps; they must match")
    if a.dtype == np.float32 and not np.isfinite(a).all():
        raise ValueError(f"modality {name!r}: non-finite values; store holes as 0")
    return a


def _filename(sample_id: str, a: np.ndarray) -> str:
    return sample_id + EXTENSIONS.get(a.dtype.name, ".png")


# ----------------------------------------------------------------------------- writing


def _save_png(path: str, a: np.ndarray) -> None:
    # Pillow infers L / RGB from uint8 and I;16 from uint16 (written as a 16-bit grayscale PNG),
    # and F from float32, which goes to a deflate-compressed TIFF (lossless).
    a = np.ascontiguousarray(a)
    if path.endswith(".tiff"):
        Image.fromarray(a).save(path, compression="tiff_adobe_deflate")
    else:
        Image.fromarray(a).save(path, compress_level=1)


class DatasetWriter:
    """Write a dataset atomically: nothing appears at `root` unless the whole write succeeded.

        with DatasetWriter(root) as w:
            w.write_sample("000017", {"rgb": rgb, "depth": depth}, label)   # label None: unlabelled
            meta = w.finish({"name": ..., "classes": [...], "height": H, "width": W, "source": {...}},
                            {"train": [...], "val": [...], "test": [...]})

    Files go into a sibling temp folder that is renamed into place on a clean exit, so a crash
    half-way never leaves a truncated dataset that a later stage would silently train on.
    """

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.tmp = f"{self.root}.tmp-{os.getpid()}"
        self._modalities: list[str] | None = None  # fixed by the first sample
        self._ids: set[str] = set()
        self._max_label = -1
        self._labelled: bool | None = None          # fixed by the first sample, like modalities
        self._finished = False

    def __enter__(self) -> "DatasetWriter":
        if os.path.exists(self.tmp):  # leftover of a killed run that had our pid
            shutil.rmtree(self.tmp)
        os.makedirs(os.path.join(self.tmp, "splits"))
        return self

    def write_sample(self, sample_id: str, modalities: dict[str, np.ndarray],
                     label: np.ndarray | None) -> None:
        _check_id(sample_id)
        if sample_id in self._ids:
            raise ValueError(f"sample id {sample_id!r} written twice")
        hw = None
        if label is not None:
            label = np.asarray(label)
            if label.dtype != np.uint8 or label.ndim != 2:
                raise ValueError(f"label: got dtype {label.dtype} shape {label.shape}; accepted: uint8 HxW")
            hw = label.shape
        if not modalities:
            raise ValueError(f"sample {sample_id!r} has no modality")
        arrays = {}
        for m, a in modalities.items():
            arrays[m] = _check_modality(m, a, hw)
            hw = arrays[m].shape[:2]
        # Every sample must carry the same modalities (and labels or none), else a loader
        # would fail mid-epoch.
        names = sorted(arrays)
        if self._modalities is None:
            self._modalities, self._labelled = names, label is not None
            for m in names + ([LABEL] if self._labelled else []):
                os.makedirs(os.path.join(self.tmp, m))
        elif names != self._modalities:
            raise ValueError(f"sample {sample_id!r} has modalities {names}, earlier samples {self._modalities}")
        elif (label is not None) != self._labelled:
            raise ValueError(f"sample {sample_id!r}: label {'given' if label is not None else 'missing'}"
                             f", unlike earlier samples; a dataset is labelled throughout or not at all")
        for m, a in arrays.items():
            _save_png(os.path.join(self.tmp, m, _filename(sample_id, a)), a)
        if label is not None:
            _save_png(os.path.join(self.tmp, LABEL, f"{sample_id}.png"), label)
            valid = label[label != IGNORE_INDEX]
            if valid.size:
                self._max_label = max(self._max_label, int(valid.max()))
        self._ids.add(sample_id)

    def finish(self, meta: dict, splits: dict[str, list[str]]) -> dict:
        """Write meta.json and the split files; returns the completed meta."""
        for key in ("name", "classes", "height", "width", "source"):
            if key not in meta:
                raise ValueError(f"meta is missing {key!r}; required: name, classes, height, width, source")
        if self._max_label >= len(meta["classes"]):
            raise ValueError(f"label value {self._max_label} but only {len(meta['classes'])} classes")
        for split, ids in splits.items():
            if split not in SPLITS:
                raise ValueError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
            missing = [i for i in ids if i not in self._ids]
            if missing:
                raise ValueError(f"split {split!r} names {len(missing)} unwritten ids, e.g. {missing[0]!r}")
        seen: set[str] = set()
        for ids in splits.values():  # a sample in two splits would leak test data into training
            dup = seen.intersection(ids)
            if dup:
                raise ValueError(f"sample {sorted(dup)[0]!r} is in more than one split")
            seen.update(ids)
        meta = dict(meta)
        meta["labelled"] = bool(self._labelled)
        meta["ignore_index"] = IGNORE_INDEX
        meta["modalities"] = [m for m in MODALITIES if m in (self._modalities or [])]
        meta["splits"] = {s: len(ids) for s, ids in splits.items()}
        for split, ids in splits.items():
            with open(os.path.join(self.tmp, "splits", f"{split}.txt"), "w") as f:
                f.write("".join(f"{i}\n" for i in ids))
        meta["content_sha256"] = content_hash(self.tmp)
        with open(os.path.join(self.tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.write("\n")
        self._finished = True
        return meta

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None or not self._finished:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if exc_type is None:
                raise RuntimeError(f"DatasetWriter({self.root!r}) closed without finish(); nothing written")
            return False
        # Swap in the new dataset; the old one is deleted only after the new one is in place.
        old = f"{self.root}.old-{os.getpid()}"
        if os.path.exists(self.root):
            os.rename(self.root, old)
        os.rename(self.tmp, self.root)
        if os.path.exists(old):
            shutil.rmtree(old)
        return False


def content_hash(root: str) -> str:
    """sha256 over every file of a dataset folder (relative path and bytes), meta.json excluded.

    meta.json carries it, so a stage can depend on meta.json alone: DVC then stats one file
    instead of every image each time it checks whether the stage is up to date (with ~20
    stages reading a dataset of thousands of files, that is most of a no-op `dvc repro`).
    """
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel == "meta.json":
                continue
            h.update(rel.encode() + b"\0")
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


# ----------------------------------------------------------------------------- reading


def read_meta(root: str) -> dict:
    path = os.path.join(root, "meta.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {root!r} is not a prepared dataset")
    with open(path) as f:
        return json.load(f)


def read_split(root: str, split: str) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
    path = os.path.join(root, "splits", f"{split}.txt")
    if not os.path.isfile(path):
        present = sorted(s for s in SPLITS if os.path.isfile(os.path.join(root, "splits", f"{s}.txt")))
        raise FileNotFoundError(f"{path} not found; splits present in {root!r}: {', '.join(present) or 'none'}")
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _load_png(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found")
    with Image.open(path) as im:
        # 16-bit PNGs open as "I;16" (or "I" on some Pillow versions: int32 holding the same values).
        return np.array(im)


def read_modality(root: str, modality: str, sample_id: str) -> np.ndarray:
    """HxWxC for multi-channel modalities, HxW for 1-channel ones, dtype as stored (one of
    MODALITIES[modality]["dtype"])."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; accepted: {', '.join(MODALITIES)}")
    spec = MODALITIES[modality]
    path = os.path.join(root, modality, f"{sample_id}.png")
    if not os.path.isfile(path) and os.path.isfile(path[:-4] + ".tiff"):
        path = path[:-4] + ".tiff"
    a = _load_png(path)
    if "uint16" in spec["dtype"] and a.dtype in (np.int32, np.uint32):  # Pillow's "I" mode
        a = a.astype(np.uint16)
    want = 2 if spec["channels"] == 1 else 3
    if a.ndim != want or a.dtype.name not in spec["dtype"]:
        raise ValueError(f"{path} holds {a.dtype} {a.shape}, expected {spec}")
    return a


def read_label(root: str, sample_id: str) -> np.ndarray:
    a = _load_png(os.path.join(root, LABEL, f"{sample_id}.png"))
    if a.dtype != np.uint8 or a.ndim != 2:
        raise ValueError(f"{root}/{LABEL}/{sample_id}.png holds {a.dtype} {a.shape}, expected uint8 HxW")
    return a


# ----------------------------------------------------------------------------- splits


def carve_validation(ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministically move a random `fraction` of the training ids into a validation split.

    The paper's datasets ship only train/test; checkpoints are selected on this carve-out, never
    on test. Both parts keep the order of `ids`, so the split files stay diff-friendly.
    """
    ids = list(ids)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    if len(set(ids)) != len(ids):
        raise ValueError("ids contain duplicates")
    n_val = int(round(len(ids) * fraction))
    n_val = min(max(n_val, 1), len(ids) - 1)
    if len(ids) < 2:
        raise ValueError(f"need at least 2 ids to carve a validation split, got {len(ids)}")
    picked = set(np.random.default_rng(seed).choice(len(ids), size=n_val, replace=False).tolist())
    train = [x for k, x in enumerate(ids) if k not in picked]
    val = [x for k, x in enumerate(ids) if k in picked]
    return train, val
