"""Taskonomy preparation from a tiny archive built like the real GitHub zip of
alexsax/taskonomy-sample-model-1: values checked pixel by pixel against independent arithmetic,
splits, and the one-line errors."""

import io
import os
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline.data import format as F
from pipeline.data import taskonomy as T

TOP = "taskonomy-sample-model-1-master"
H, W = 12, 16                               # not 512 and not square: catches hard-coded sizes / swaps
TRAIN = ["point_1_view_0", "point_1_view_3", "point_22_view_1"]
VAL = ["point_5_view_0", "point_5_view_2"]
EXTRA = ["point_9_view_0"]                  # in the archive but in no list: must be ignored


def _arrays(view: str) -> dict[str, np.ndarray]:
    """Source PNG content of one view, with the real storage kinds (reproducible per view)."""
    rng = np.random.default_rng(zlib.crc32(view.encode()))
    u8 = lambda c: rng.integers(0, 256, size=(H, W, c), dtype=np.uint8)
    u16 = lambda: rng.integers(0, 65536, size=(H, W), dtype=np.uint16)
    a = {"rgb": u8(3), "normal": u8(3), "principal_curvature": u8(3),
         "reshading": u8(1)[:, :, 0], "depth_euclidean": u16(), "depth_zbuffer": u16(),
         "edge_occlusion": u16(), "edge_texture": u16()}
    for d in ("depth_euclidean", "depth_zbuffer"):   # saturated, zero and a high value
        a[d][0, 0], a[d][0, 1], a[d][1, 0] = 65535, 0, 65534
    a["edge_texture"][0, 0] = 40000                 # > 2**15: a signed read would break it
    return a


def _png(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(a).save(b, format="PNG")
    return b.getvalue()


def _zip(path, *, top=TOP, override=None, skip=(), views=TRAIN + VAL + EXTRA):
    """Write the archive; `override` {(view, domain): array} replaces a PNG, `skip` drops members."""
    override = override or {}
    with zipfile.ZipFile(path, "w") as z:
        z.comment = b"0123456789abcdef0123456789abcdef01234567"   # GitHub puts the commit sha here
        z.writestr(f"{top}/", b"")
        z.writestr(f"{top}/README.md", b"sample building")
        for view in views:
            arrays = dict(_arrays(view), segment_semantic=np.zeros((H, W), np.uint8))
            for d, a in arrays.items():
                name = f"{top}/{d}/{view}_domain_{d}.png"
                if name not in skip:
                    z.writestr(name, _png(override.get((view, d), a)))
    return str(path)


def _lists(tmp_path, train=TRAIN, val=VAL):
    # Deliberately different line styles: the official format is not known to us.
    tr, va = tmp_path / "train_domain.txt", tmp_path / "val_domain.txt"
    tr.write_text("".join(f"{v}_domain_rgb.png\n" for v in train) + "\n")
    va.write_text("\n".join(f"  rgb/{v} " for v in val))
    return str(tr), str(va)


def _prepare(tmp_path, zip_kw=None, lists=None, **kw):
    z = _zip(tmp_path / "master.zip", **(zip_kw or {}))
    tr, va = lists or _lists(tmp_path)
    out = tmp_path / "out"
    return T.prepare(z, tr, va, str(out), progress=False, **kw), out


def _error(tmp_path, **kw) -> str:
    with pytest.raises(ValueError) as e:
        _prepare(tmp_path, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    assert not (tmp_path / "out").exists()    # nothing written
    return msg


def test_values_splits_and_meta(tmp_path):
    meta, out = _prepare(tmp_path)
    assert F.read_split(out, "train") == TRAIN and F.read_split(out, "val") == VAL
    assert meta["splits"] == {"train": 3, "val": 2}
    assert (meta["name"], meta["classes"], meta["height"], meta["width"]) == ("taskonomy", [], H, W)
    assert meta["labelled"] is False and not (out / "label").exists()
    assert sorted(meta["modalities"]) == sorted(T.DOMAINS)
    assert meta["source"]["archive"] == "master.zip" and meta["source"]["archive_top"] == TOP + "/"
    assert meta["source"]["archive_comment"].startswith("0123456789abcdef")
    assert meta["scalings"]["edge_texture"]["scale"] == pytest.approx(255 / 11355)
    assert meta["scalings"]["edge_occlusion"]["scale"] == pytest.approx(255 / 11584)
    assert meta["scalings"]["depth_zbuffer"]["scale"] == pytest.approx(255 / 11.1)
    assert meta["scalings"]["depth_zbuffer"]["raw_per_metre"] == 512
    assert sorted(os.listdir(out / "rgb")) == sorted(f"{v}.png" for v in TRAIN + VAL)  # EXTRA ignored

    for view in TRAIN + VAL:
        src = _arrays(view)
        for d in ("rgb", "normal", "principal_curvature", "reshading", "edge_occlusion", "edge_texture"):
            got = F.read_modality(out, d, view)
            assert got.dtype == src[d].dtype and np.array_equal(got, src[d]), (view, d)
        for d in ("depth_euclidean", "depth_zbuffer"):
            got = F.read_modality(out, d, view)
            v = src[d].astype(np.float64)
            want = np.where(src[d] == 65535, 0.0, v / 512.0)
            assert got.dtype == np.float32 and np.array_equal(got.astype(np.float64), want), (view, d)
            assert got[0, 0] == 0.0 and got[0, 1] == 0.0 and got[1, 0] == 65534 / 512


def test_domain_subset_and_other_top_folder(tmp_path):
    # Top folder named after a commit (archive of a sha, not of master); missing members of an
    # unrequested domain do not matter.
    top = "taskonomy-sample-model-1-0a1b2c3"
    skip = {f"{top}/normal/{VAL[0]}_domain_normal.png"}
    meta, out = _prepare(tmp_path, zip_kw={"top": top, "skip": skip},
                         domains=("depth_zbuffer", "rgb"))
    assert sorted(meta["modalities"]) == ["depth_zbuffer", "rgb"]
    assert sorted(p for p in os.listdir(out) if p not in ("splits", "meta.json")) == ["depth_zbuffer", "rgb"]
    assert list(meta["scalings"]) == ["depth_zbuffer"]
    assert meta["source"]["domains"] == ["depth_zbuffer", "rgb"]


def test_rgb_alpha_dropped_and_reshading_rgb(tmp_path):
    v = TRAIN[0]
    rgba = np.random.default_rng(1).integers(0, 256, size=(H, W, 4), dtype=np.uint8)
    grey = np.random.default_rng(2).integers(0, 256, size=(H, W), dtype=np.uint8)
    over = {(v, "rgb"): rgba, (v, "reshading"): np.stack([grey] * 3, axis=2),
            (VAL[0], "reshading"): np.dstack([grey] * 3 + [np.full_like(grey, 255)])}
    meta, out = _prepare(tmp_path, zip_kw={"override": over})
    assert np.array_equal(F.read_modality(out, "rgb", v), rgba[:, :, :3])
    assert np.array_equal(F.read_modality(out, "reshading", v), grey)
    assert np.array_equal(F.read_modality(out, "reshading", VAL[0]), grey)


def test_reshading_unequal_channels(tmp_path):
    bad = np.zeros((H, W, 3), np.uint8)
    bad[3, 4, 1] = 7
    msg = _error(tmp_path, zip_kw={"override": {(VAL[1], "reshading"): bad}})
    assert f"reshading/{VAL[1]}_domain_reshading.png" in msg and "unequal" in msg


def test_missing_member(tmp_path):
    name = f"{TOP}/edge_texture/{VAL[0]}_domain_edge_texture.png"
    later = f"{TOP}/rgb/{VAL[1]}_domain_rgb.png"      # a later view: not the first missing
    msg = _error(tmp_path, zip_kw={"skip": {name, later}})
    assert name in msg and "missing" in msg and later not in msg


@pytest.mark.parametrize("domain, array, found", [
    ("depth_zbuffer", np.zeros((H, W), np.uint8), "L"),          # 8-bit depth: lossy, rejected
    ("edge_occlusion", np.zeros((H, W, 3), np.uint8), "RGB"),
    ("normal", np.zeros((H, W), np.uint16), "I;16"),
    ("rgb", np.zeros((H, W), np.uint8), "L"),
])
def test_wrong_png_mode(tmp_path, domain, array, found):
    msg = _error(tmp_path, zip_kw={"override": {(TRAIN[1], domain): array}})
    expected = {"depth_zbuffer": "I;16", "edge_occlusion": "I;16", "normal": "RGB", "rgb": "RGB or RGBA"}
    assert f"{domain}/{TRAIN[1]}_domain_{domain}.png" in msg
    assert f"mode {found}," in msg and f"expected {expected[domain]}" in msg


def test_overlapping_points(tmp_path):
    msg = _error(tmp_path, lists=_lists(tmp_path, val=VAL + ["point_22_view_7"]))
    assert "point 22" in msg and "point_22_view_1" in msg and "point_22_view_7" in msg


def test_bad_list_line_and_duplicates(tmp_path):
    tr, va = _lists(tmp_path)
    with open(va, "w") as f:
        f.write("point_5_view_0\n\npoint_5_view_x\n")
    msg = _error(tmp_path, lists=(tr, va))
    assert msg.startswith(f"{va}:3:") and "point_5_view_x" in msg

    with open(va, "w") as f:
        f.write("point_5_view_0\npoint_5_view_2.png\nval/point_5_view_2\n")
    msg = _error(tmp_path, lists=(tr, va))
    assert msg.startswith(f"{va}:3:") and "line 2" in msg

    with open(va, "w") as f:                 # view 12 is not view 1: ids must not be prefixes
        f.write("point_5_view_12\n")
    with pytest.raises(ValueError, match="point_5_view_12_domain_rgb.png is missing"):
        _prepare(tmp_path, lists=(tr, va))


def test_bad_domains(tmp_path):
    assert "need distinct names" in _error(tmp_path, domains=("rgb", "semantic"))
    assert "need distinct names" in _error(tmp_path, domains=("rgb", "rgb"))
