"""NYUDv2 preparation against format-faithful fixtures: a MATLAB v7.3 (HDF5) labeled file with
the real key names, dtypes, reversed axis order and 480x640 frame size (5 frames), and v5
splits.mat / classMapping40.mat with the real keys and shapes. Every expectation is computed
here from the (H, W) arrays the fixture was built from, not by the code under test."""
import os

import h5py
import numpy as np
import pytest
import scipy.io

from pipeline.data import format as fmt
from pipeline.data.nyudv2 import prepare

N, H, W = 5, 480, 640
TRAIN, TEST = [4, 1, 3], [5, 2]           # 1-based, as in splits.mat
CROP = (6, 474, 7, 632)                    # the white-border box of the official data


def _frames(seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    depths = rng.uniform(0.5, 9.5, (N, H, W)).astype(np.float32)      # not on a mm grid
    raw = (depths + rng.uniform(-0.05, 0.05, (N, H, W))).astype(np.float32)
    raw[rng.random((N, H, W)) < 0.2] = 0.0                             # missing readings
    labels = rng.integers(0, 895, (N, H, W)).astype(np.uint16)
    labels[:, :10, :10] = 0                                            # unlabeled corner
    labels[2, 100, 200] = 894                                          # highest class id
    return rgb, depths, raw, labels


def write_labeled(path, rgb, depths, raw, labels, drop=(), reverse=True):
    """Store (N, H, W[, 3]) arrays the way MATLAB v7.3 does: h5py sees the axes reversed."""
    arrays = {"images": rgb.transpose(0, 3, 2, 1) if reverse else rgb,
              "depths": depths.transpose(0, 2, 1), "rawDepths": raw.transpose(0, 2, 1),
              "labels": labels.transpose(0, 2, 1)}
    with h5py.File(path, "w", userblock_size=512) as f:                # MATLAB's 512-byte header
        for k, a in arrays.items():
            if k not in drop:
                f.create_dataset(k, data=np.ascontiguousarray(a), chunks=(1,) + a.shape[1:])
                f[k].attrs["MATLAB_class"] = np.bytes_({"uint8": "uint8", "float32": "single",
                                                        "uint16": "uint16"}[a.dtype.name])


def write_splits(path, train, test):
    scipy.io.savemat(path, {"trainNdxs": np.array(train, float).reshape(-1, 1),
                            "testNdxs": np.array(test, float).reshape(-1, 1)})


def write_classmap(path, map_class, names):
    cell = np.empty((1, len(names)), dtype=object)
    cell[0, :] = names
    scipy.io.savemat(path, {"mapClass": np.asarray(map_class, float).reshape(1, -1), "className": cell})


NAMES = [f"class{k:02d}" for k in range(1, 41)]


@pytest.fixture(scope="module")
def raw_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("nyu_raw")
    rgb, depths, raw, labels = _frames()
    map_class = np.random.default_rng(1).integers(1, 41, 894)
    map_class[:40] = np.arange(40, 0, -1)                              # every class occurs
    paths = {"labeled": str(d / "nyu_depth_v2_labeled.mat"), "splits": str(d / "splits.mat"),
             "classmap": str(d / "classMapping40.mat")}
    write_labeled(paths["labeled"], rgb, depths, raw, labels)
    write_splits(paths["splits"], TRAIN, TEST)
    write_classmap(paths["classmap"], map_class, NAMES)
    return dict(paths, dir=d, rgb=rgb, depths=depths, raw=raw, labels=labels, map_class=map_class)


@pytest.fixture(scope="module")
def cropped(raw_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("nyu_out") / "nyudv2"
    meta = prepare(raw_files["labeled"], raw_files["splits"], raw_files["classmap"], str(out),
                   crop=CROP, depth="inpainted", val_fraction=0.34, seed=3, progress=False)
    return out, meta


def expected_label(labels, map_class):
    # Written independently of the module's lookup table: one pixel at a time on a sample, and
    # np.where on the whole frame.
    return np.where(labels == 0, 255, map_class[np.maximum(labels.astype(np.int64), 1) - 1] - 1).astype(np.uint8)


def test_rgb_depth_label_pixels_with_crop(raw_files, cropped):
    out, _ = cropped
    t, b, l, r = CROP
    for i in TRAIN + TEST:
        sid = f"{i:06d}"
        k = i - 1                                                      # id 000003 = third frame
        rgb = fmt.read_modality(out, "rgb", sid)
        depth = fmt.read_modality(out, "depth", sid)
        label = fmt.read_label(out, sid)
        assert rgb.shape == (468, 625, 3) and depth.shape == (468, 625) and label.shape == (468, 625)
        np.testing.assert_array_equal(rgb, raw_files["rgb"][k, t:b, l:r])
        assert depth.dtype == np.float32
        np.testing.assert_array_equal(depth, raw_files["depths"][k, t:b, l:r])   # lossless metres
        np.testing.assert_array_equal(label, expected_label(raw_files["labels"][k, t:b, l:r],
                                                            raw_files["map_class"]))
    # A few pixels by hand, in full-frame coordinates (y, x): wrong axes or offsets show here.
    lab, mc = raw_files["labels"], raw_files["map_class"]
    for k, y, x in [(0, 10, 12), (2, 100, 200), (4, 473, 631), (1, 6, 7), (3, 300, 20)]:
        sid = f"{k + 1:06d}"
        assert tuple(fmt.read_modality(out, "rgb", sid)[y - t, x - l]) == tuple(raw_files["rgb"][k, y, x])
        v = int(lab[k, y, x])
        assert fmt.read_label(out, sid)[y - t, x - l] == (255 if v == 0 else int(mc[v - 1]) - 1)
    assert fmt.read_label(out, "000003")[100 - t, 200 - l] == mc[893] - 1    # class 894
    assert fmt.read_label(out, "000001")[9 - t, 9 - l] == 255                  # unlabeled -> ignore


def test_meta_and_splits(raw_files, cropped):
    out, meta = cropped
    assert meta == fmt.read_meta(out)
    assert meta["name"] == "nyudv2" and meta["classes"] == NAMES
    assert (meta["height"], meta["width"]) == (468, 625)
    assert meta["modalities"] == ["rgb", "depth"] and meta["ignore_index"] == 255
    src = meta["source"]
    assert src["crop"] == list(CROP) and src["depth"] == "inpainted" and src["index_base"] == 1
    assert src["labeled"] == "nyu_depth_v2_labeled.mat"
    test = fmt.read_split(out, "test")
    train, val = fmt.read_split(out, "train"), fmt.read_split(out, "val")
    assert test == ["000005", "000002"]
    assert sorted(train + val) == ["000001", "000003", "000004"]
    assert len(val) == 1 and not set(val) & set(train)
    assert (train, val) == fmt.carve_validation(["000004", "000001", "000003"], 0.34, 3)
    assert meta["splits"] == {"train": 2, "val": 1, "test": 2}
    assert sorted(os.listdir(out / "rgb")) == [f"{i:06d}.png" for i in range(1, 6)]


def test_raw_depth_no_crop(raw_files, tmp_path):
    out = tmp_path / "nyu_raw_depth"
    meta = prepare(raw_files["labeled"], raw_files["splits"], raw_files["classmap"], str(out),
                   crop=None, depth="raw", val_fraction=0.5, seed=0, progress=False)
    assert (meta["height"], meta["width"]) == (480, 640) and meta["source"]["crop"] is None
    d = fmt.read_modality(out, "depth", "000002")
    np.testing.assert_array_equal(d, raw_files["raw"][1])
    assert (d == 0).mean() > 0.15                                      # holes kept as 0
    assert not np.array_equal(d, raw_files["depths"][1])
    np.testing.assert_array_equal(fmt.read_modality(out, "rgb", "000005"), raw_files["rgb"][4])


# ----------------------------------------------------------------------------- errors


def _run(files, out, **kw):
    args = dict(crop=None, depth="inpainted", val_fraction=0.34, seed=0, progress=False)
    args.update(kw)
    return prepare(files.get("labeled"), files.get("splits"), files.get("classmap"), str(out), **args)


def _expect_error(files, tmp_path, match, exc=ValueError, **kw):
    out = tmp_path / "out"
    with pytest.raises(exc) as e:
        _run(files, out, **kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert match in msg, msg
    assert not out.exists() and not any(p.name.startswith("out.tmp") for p in tmp_path.iterdir())
    return msg


def _small(tmp_path, n=3, h=8, w=6, **kw):
    rng = np.random.default_rng(0)
    path = str(tmp_path / "small_labeled.mat")
    write_labeled(path, rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8),
                  rng.random((n, h, w), dtype=np.float32), rng.random((n, h, w), dtype=np.float32),
                  rng.integers(0, 5, (n, h, w)).astype(np.uint16), **kw)
    return path


def test_error_missing_key(raw_files, tmp_path):
    splits = str(tmp_path / "splits.mat")
    write_splits(splits, [1, 3], [2])
    files = dict(raw_files, labeled=_small(tmp_path, drop=("rawDepths",)), splits=splits)
    msg = _expect_error(files, tmp_path, "missing dataset 'rawDepths'", depth="raw")
    assert "small_labeled.mat" in msg and "accepted" in msg
    _run(files, tmp_path / "ok", depth="inpainted", val_fraction=0.5)  # the file is fine otherwise


def test_error_images_not_reversed(raw_files, tmp_path):
    files = dict(raw_files, labeled=_small(tmp_path, reverse=False))
    msg = _expect_error(files, tmp_path, "images has dtype uint8 shape (3, 8, 6, 3)")
    assert "accepted: uint8 (N, 3, W, H)" in msg


def test_error_depth_shape_mismatch(raw_files, tmp_path):
    path = _small(tmp_path)
    with h5py.File(path, "a") as f:
        del f["depths"]
        f.create_dataset("depths", data=np.zeros((3, 8, 6), np.float32))  # (N, H, W): not reversed
    _expect_error(dict(raw_files, labeled=path), tmp_path, "depths has dtype float32 shape (3, 8, 6)")


def test_error_not_hdf5(raw_files, tmp_path):
    _expect_error(dict(raw_files, labeled=raw_files["splits"]), tmp_path, "not an HDF5 file")


def test_error_missing_file(raw_files, tmp_path):
    _expect_error(dict(raw_files, labeled=str(tmp_path / "nope.mat")), tmp_path, "nope.mat: not found",
                  exc=FileNotFoundError)


@pytest.mark.parametrize("train, test, match", [
    ([1, 2], [3, 6], "testNdxs holds index 6 outside 1..5"),
    ([0, 1], [2], "trainNdxs holds index 0 outside 1..5"),     # 0-based lists are caught
    ([1, 3], [3, 4], "frame 3 is in both trainNdxs and testNdxs"),
    ([1, 1, 2], [3], "trainNdxs lists a frame index more than once"),
])
def test_error_bad_splits(raw_files, tmp_path, train, test, match):
    path = str(tmp_path / "splits.mat")
    write_splits(path, train, test)
    msg = _expect_error(dict(raw_files, splits=path), tmp_path, match)
    assert msg.startswith(path)


def test_error_split_key_missing(raw_files, tmp_path):
    path = str(tmp_path / "splits.mat")
    scipy.io.savemat(path, {"trainNdxs": np.array([[1.0], [2.0]])})
    _expect_error(dict(raw_files, splits=path), tmp_path, "missing key 'testNdxs'")


def test_error_classmap(raw_files, tmp_path):
    path = str(tmp_path / "classMapping40.mat")
    scipy.io.savemat(path, {"className": np.array([["a", "b"]], dtype=object)})
    _expect_error(dict(raw_files, classmap=path), tmp_path, "missing key 'mapClass'")
    write_classmap(path, [1, 2, 41], NAMES)
    _expect_error(dict(raw_files, classmap=path), tmp_path, "values outside 1..40")


def test_error_label_beyond_mapping(raw_files, tmp_path):
    path = str(tmp_path / "classMapping40.mat")
    write_classmap(path, np.ones(10), NAMES)                   # maps 1..10 only; labels reach 894
    _expect_error(dict(raw_files, classmap=path), tmp_path, "but mapClass maps only 1..10")


@pytest.mark.parametrize("crop", [(0, 481, 0, 640), (10, 10, 0, 640), (0, 480, -1, 5), (1, 2, 3)])
def test_error_bad_crop(raw_files, tmp_path, crop):
    _expect_error(raw_files, tmp_path, "crop", crop=crop)


def test_error_bad_depth_choice(raw_files, tmp_path):
    _expect_error(raw_files, tmp_path, "accepted: inpainted, raw", depth="hha")
