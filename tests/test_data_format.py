"""The shared on-disk dataset format: round trips, validation, atomic writes, split carving."""

import os

import numpy as np
import pytest

from pipeline.data import format as F

H, W = 5, 7
META = {"name": "t", "classes": ["a", "b", "c"], "height": H, "width": W, "source": {"made": "by test"}}


def _sample(rng):
    """One array per modality, covering each dtype's full range (incl. uint16 > 2**15)."""
    mods = {}
    for name, spec in F.MODALITIES.items():
        dtype = spec["dtype"][0]
        shape = (H, W) if spec["channels"] == 1 else (H, W, spec["channels"])
        if dtype == "float32":   # metres, with a hole and values no uint16 mm could hold
            a = rng.uniform(0.1, 80.0, size=shape).astype(np.float32)
            a.flat[0], a.flat[1] = 0.0, 1.2345678
        else:
            hi = np.iinfo(dtype).max
            a = rng.integers(0, hi + 1, size=shape, dtype=dtype)
            a.flat[0], a.flat[1] = 0, hi
        mods[name] = a
    label = rng.integers(0, 3, size=(H, W), dtype=np.uint8)
    label[0, 0] = F.IGNORE_INDEX
    return mods, label


def _write(root, ids=("s0", "s1", "s2"), seed=0):
    rng = np.random.default_rng(seed)
    samples = {i: _sample(rng) for i in ids}
    with F.DatasetWriter(root) as w:
        for i, (mods, label) in samples.items():
            w.write_sample(i, mods, label)
        meta = w.finish(META, {"train": list(ids[:-1]), "test": [ids[-1]]})
    return samples, meta


def test_round_trip_every_modality(tmp_path):
    root = str(tmp_path / "ds")
    samples, meta = _write(root)
    assert F.read_meta(root) == meta
    assert meta["modalities"] == list(F.MODALITIES)
    assert meta["splits"] == {"train": 2, "test": 1} and meta["ignore_index"] == 255
    assert F.read_split(root, "train") == ["s0", "s1"] and F.read_split(root, "test") == ["s2"]
    for i, (mods, label) in samples.items():
        for name, a in mods.items():
            b = F.read_modality(root, name, i)
            assert b.dtype == a.dtype and b.shape == a.shape, name
            assert np.array_equal(a, b), name
        assert np.array_equal(F.read_label(root, i), label)


def test_uint16_every_value_round_trips(tmp_path):
    # All 65536 values, including those a signed or 8-bit code path would corrupt.
    depth = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    label = np.zeros((256, 256), np.uint8)
    root = str(tmp_path / "d")
    with F.DatasetWriter(root) as w:
        w.write_sample("x", {"depth": depth}, label)
        w.finish(META, {"train": ["x"]})
    back = F.read_modality(root, "depth", "x")
    assert back.dtype == np.uint16 and np.array_equal(back, depth)
    assert F.read_meta(root)["modalities"] == ["depth"]
    assert F.depth_to_metres(back)[255, 255] == pytest.approx(65.535)


def test_one_channel_accepts_hxwx1(tmp_path):
    root = str(tmp_path / "d")
    shade = np.full((H, W, 1), 9, np.uint8)
    with F.DatasetWriter(root) as w:
        w.write_sample("x", {"shade": shade}, np.zeros((H, W), np.uint8))
        w.finish(META, {"train": ["x"]})
    assert F.read_modality(root, "shade", "x").shape == (H, W)


@pytest.mark.parametrize("name,array,words", [
    ("rgb", np.zeros((H, W, 3), np.float32), ["rgb", "float32", "uint8"]),
    ("rgb", np.zeros((H, W), np.uint8), ["rgb", f"({H}, {W})", "HxWx3"]),
    ("rgb", np.zeros((H, W, 4), np.uint8), ["rgb", f"({H}, {W}, 4)", "HxWx3"]),
    ("depth", np.zeros((H, W), np.uint8), ["depth", "uint8", "uint16"]),
    ("depth", np.zeros((H, W), np.float64), ["depth", "float64", "uint16 or float32"]),
    ("depth", np.full((H, W), np.nan, np.float32), ["depth", "non-finite", "0"]),
    ("normal", np.zeros((H, W, 1), np.uint8), ["normal", "HxWx3"]),
    ("edge", np.zeros((H, W, 3), np.uint8), ["edge", "HxW"]),
    ("shade", np.zeros((H + 1, W), np.uint8), ["shade", "size", "match"]),
    ("colour", np.zeros((H, W, 3), np.uint8), ["colour", "rgb", "depth"]),
])
def test_bad_arrays_raise_helpful_error(tmp_path, name, array, words):
    with pytest.raises(ValueError) as e:
        with F.DatasetWriter(str(tmp_path / "d")) as w:
            w.write_sample("x", {name: array}, np.zeros((H, W), np.uint8))
    msg = str(e.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg, (word, msg)
    assert not os.path.exists(tmp_path / "d")


@pytest.mark.parametrize("label", [np.zeros((H, W), np.int64), np.zeros((H, W, 1), np.uint8)])
def test_bad_label_raises(tmp_path, label):
    with pytest.raises(ValueError, match="label"):
        with F.DatasetWriter(str(tmp_path / "d")) as w:
            w.write_sample("x", {}, label)


def test_inconsistent_samples_and_splits_raise(tmp_path):
    rng = np.random.default_rng(0)
    mods, label = _sample(rng)
    with pytest.raises(ValueError, match="modalities"):
        with F.DatasetWriter(str(tmp_path / "a")) as w:
            w.write_sample("x", mods, label)
            w.write_sample("y", {"rgb": mods["rgb"]}, label)
    with pytest.raises(ValueError, match="more than one split"):
        with F.DatasetWriter(str(tmp_path / "b")) as w:
            w.write_sample("x", mods, label)
            w.finish(META, {"train": ["x"], "test": ["x"]})
    with pytest.raises(ValueError, match="unwritten"):
        with F.DatasetWriter(str(tmp_path / "c")) as w:
            w.write_sample("x", mods, label)
            w.finish(META, {"train": ["x", "nope"]})
    with pytest.raises(ValueError, match="classes"):
        with F.DatasetWriter(str(tmp_path / "d")) as w:
            w.write_sample("x", mods, np.full((H, W), 7, np.uint8))  # only 3 classes
            w.finish(META, {"train": ["x"]})
    assert os.listdir(tmp_path) == []


def test_exception_leaves_nothing(tmp_path):
    root = tmp_path / "ds"
    with pytest.raises(KeyError):
        with F.DatasetWriter(str(root)) as w:
            mods, label = _sample(np.random.default_rng(0))
            w.write_sample("x", mods, label)
            w.finish(META, {"train": ["x"]})  # even after finish, an error inside `with` aborts
            raise KeyError("boom")
    assert os.listdir(tmp_path) == []


def test_missing_finish_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="finish"):
        with F.DatasetWriter(str(tmp_path / "ds")) as w:
            w.write_sample("x", *_sample(np.random.default_rng(0)))
    assert os.listdir(tmp_path) == []


def test_replace_existing_dataset(tmp_path):
    root = str(tmp_path / "ds")
    _write(root, ids=("a", "b", "c"), seed=1)
    # A failed rewrite keeps the old dataset intact.
    with pytest.raises(ZeroDivisionError):
        with F.DatasetWriter(root) as w:
            w.write_sample("z", *_sample(np.random.default_rng(3)))
            1 / 0
    assert F.read_split(root, "train") == ["a", "b"]
    # A successful rewrite replaces it completely (old ids gone, no leftovers beside it).
    samples, _ = _write(root, ids=("p", "q"), seed=2)
    assert F.read_split(root, "train") == ["p"] and F.read_split(root, "test") == ["q"]
    assert sorted(os.listdir(os.path.join(root, "rgb"))) == ["p.png", "q.png"]
    assert np.array_equal(F.read_modality(root, "rgb", "q"), samples["q"][0]["rgb"])
    assert os.listdir(tmp_path) == ["ds"]


def test_read_errors(tmp_path):
    root = str(tmp_path / "ds")
    _write(root)
    with pytest.raises(FileNotFoundError) as e:
        F.read_split(root, "val")
    assert "val.txt" in str(e.value) and "test, train" in str(e.value)
    with pytest.raises(ValueError, match="train, val, test"):
        F.read_split(root, "validation")
    with pytest.raises(ValueError, match="accepted"):
        F.read_modality(root, "thermal", "s0")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        F.read_modality(root, "rgb", "nope")
    with pytest.raises(FileNotFoundError, match="meta.json"):
        F.read_meta(str(tmp_path))


def test_normal_codec():
    n = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.6, -0.8, 0.0]])
    enc = F.encode_normal(n)
    assert enc.dtype == np.uint8 and enc[0, 2] == 0 and enc[1, 0] == 255
    assert np.abs(F.decode_normal(enc) - n).max() <= 0.5 / 127.5 + 1e-6


def test_carve_validation():
    ids = [f"{i:04d}" for i in range(100)]
    tr, va = F.carve_validation(ids, 0.2, seed=7)
    assert len(va) == 20 and len(tr) == 80
    assert set(tr).isdisjoint(va) and set(tr) | set(va) == set(ids)
    assert tr == sorted(tr, key=ids.index) and va == sorted(va, key=ids.index)  # original order kept
    assert (tr, va) == F.carve_validation(ids, 0.2, seed=7)  # deterministic
    assert va != F.carve_validation(ids, 0.2, seed=8)[1]  # and actually random
    assert va != ids[-20:] and va != ids[:20]
    # Extremes still leave at least one id on each side.
    assert [len(p) for p in F.carve_validation(ids[:3], 0.01, 0)] == [2, 1]
    assert [len(p) for p in F.carve_validation(ids[:3], 0.99, 0)] == [1, 2]


@pytest.mark.parametrize("ids,fraction", [(["a", "b"], 0.0), (["a", "b"], 1.0), (["a", "b"], -0.1),
                                          (["a"], 0.5), ([], 0.5), (["a", "a", "b"], 0.5)])
def test_carve_validation_errors(ids, fraction):
    with pytest.raises(ValueError):
        F.carve_validation(ids, fraction, 0)


def test_meta_records_a_content_hash_that_tracks_every_file(tmp_path):
    from pipeline.data.synthetic import generate
    root = tmp_path / "ds"
    meta = generate(root, n_trainval=4, val_fraction=0.25, n_test=2, height=16, width=16, seed=0)
    assert F.read_meta(root)["content_sha256"] == meta["content_sha256"] == F.content_hash(str(root))
    label = next((root / "label").iterdir())
    data = bytearray(label.read_bytes())
    data[-20] ^= 1
    label.write_bytes(bytes(data))
    assert F.content_hash(str(root)) != meta["content_sha256"]


def test_float_depth_is_lossless_and_unlabelled_datasets_work(tmp_path):
    # NYUDv2 depth arrives as float32 metres: a uint16 mm PNG would round 1.2345678 to 1.235.
    depth = np.array([[0.0, 1.2345678, 9.87654321]], np.float32)
    root = str(tmp_path / "d")
    with F.DatasetWriter(root) as w:
        w.write_sample("a", {"depth": depth}, None)
        meta = w.finish({**META, "classes": [], "height": 1, "width": 3}, {"train": ["a"]})
    back = F.read_modality(root, "depth", "a")
    assert back.dtype == np.float32 and np.array_equal(back, depth)
    assert os.path.isfile(os.path.join(root, "depth", "a.tiff"))
    assert meta["labelled"] is False and not os.path.exists(os.path.join(root, F.LABEL))
    assert np.array_equal(F.depth_to_metres(back), depth)
    # Labelled and unlabelled samples cannot be mixed.
    with pytest.raises(ValueError, match="labelled throughout"):
        with F.DatasetWriter(str(tmp_path / "e")) as w:
            w.write_sample("a", {"depth": depth}, None)
            w.write_sample("b", {"depth": depth}, np.zeros((1, 3), np.uint8))


def test_loader_refuses_a_split_of_mixed_sizes(tmp_path):
    from pipeline.data.loader import SegmentationSplit
    root = str(tmp_path / "d")
    with F.DatasetWriter(root) as w:
        for i, (h, w_) in enumerate([(4, 5), (6, 5)]):
            w.write_sample(f"s{i}", {"rgb": np.zeros((h, w_, 3), np.uint8),
                                     "depth": np.ones((h, w_), np.float32)}, np.zeros((h, w_), np.uint8))
        w.finish({**META, "height": None, "width": None}, {"train": ["s0", "s1"]})
    with pytest.raises(ValueError, match="mixes image sizes") as e:
        SegmentationSplit(root, "train", ("rgb", "depth"))
    assert "\n" not in str(e.value)


def test_float_and_millimetre_depth_give_the_same_network_input():
    import torch
    from pipeline.data.loader import normalise
    mm = torch.tensor([[[[0, 1234, 9876]]]], dtype=torch.int32)
    metres = torch.tensor([[[[0.0, 1.234, 9.876]]]])
    assert torch.allclose(normalise("depth", mm), normalise("depth", metres))
