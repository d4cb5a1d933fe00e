"""SUN RGB-D preparation against format-faithful fixtures: an image zip laid out like SUNRGBD.zip
(scenes from two sensors with different sizes, jpg rgb, 16-bit depth/ and depth_bfx/ PNGs whose
values exercise the bit rotation and the 8 m clip) and a toolbox zip with a v5 allsplit.mat
(prefixed paths), a v5 SUNRGBDMeta struct array, a v5 seg37list.mat and a v7.3 (HDF5)
SUNRGBD2Dseg.mat whose seglabel holds object references, as in the real files. Expectations are
computed here, independently of the module."""
import io
import zipfile

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from pipeline.data import format as fmt
from pipeline.data.sunrgbd import decode_depth, prepare

PREFIX = "/n/fs/sun3d/data/"
CLASSES = [f"c{k:02d}" for k in range(1, 38)]
# (scene folder, rgb/depth file stem, (H, W), split); order = SUNRGBDMeta order.
SCENES = [
    ("SUNRGBD/kv2/kinect2data/000002_2014-05-26_14-23-37_260595134347_rgbf000103-resize", "0000103",
     (530, 730), "test"),
    ("SUNRGBD/kv1/NYUdata/NYU0001", "NYU0001", (427, 561), "train"),
    ("SUNRGBD/kv2/kinect2data/000005_2014-05-26_14-25-01_260595134347_rgbf000022-resize", "0000022",
     (530, 730), "train"),
    ("SUNRGBD/kv1/NYUdata/NYU0002", "NYU0002", (427, 561), "test"),
    ("SUNRGBD/kv1/NYUdata/NYU0003", "NYU0003", (427, 561), "train"),
    ("SUNRGBD/kv2/kinect2data/000009_2014-05-26_14-30-12_260595134347_rgbf000050-resize", "0000050",
     (530, 730), "train"),
]
# The error tests only need the layout, not the size: the same scenes at 1/10 scale keep them fast.
SMALL = [(s, stem, (h // 10, w // 10), split) for s, stem, (h, w), split in SCENES]


def _png16(a):
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def _jpg(a):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _depth_png_values(rng, h, w):
    """What a SUN depth PNG holds: mm << 3 mostly (some beyond 8 m), zeros, and some values with
    the low 3 bits set (which the toolbox's rotation turns into > 8 m)."""
    mm = rng.integers(300, 8192, (h, w))                               # up to 8.191 m
    v = mm << 3
    noisy = rng.random((h, w)) < 0.1
    v[noisy] = rng.integers(0, 65536, int(noisy.sum()))
    v[rng.random((h, w)) < 0.1] = 0
    v[0, :4] = [8000 << 3, 8001 << 3, (8000 << 3) | 1, 0xFFFF]         # the clip boundary
    return v.astype(np.uint16)


def write_mat_cell(strings):
    c = np.empty((1, len(strings)), dtype=object)
    c[0, :] = strings
    return c


def build(tmp, *, scenes=SMALL, alltrain=None, alltest=None, drop_member=None, seg_shape=None,
          label_override=None, meta_fields=None, extra_test_entry=True, rgbpath=None):
    """Write SUNRGBD.zip and SUNRGBDtoolbox.zip fixtures; return paths and the source arrays."""
    rng = np.random.default_rng(7)
    data = []
    images_zip, toolbox_zip = tmp / "SUNRGBD.zip", tmp / "SUNRGBDtoolbox.zip"
    with zipfile.ZipFile(images_zip, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("SUNRGBD/", b"")
        for k, (scene, stem, (h, w), _) in enumerate(scenes):
            yy, xx = np.mgrid[0:h, 0:w]
            base = np.array([(40 * k) % 256, 255 - 30 * k, (90 + 50 * k) % 256])
            rgb = np.clip(base + 0.2 * (xx[..., None] - w / 2) * [1, 0, -1]
                          + 0.2 * (yy[..., None] - h / 2) * [0, 1, 1], 0, 255).astype(np.uint8)
            jpg = _jpg(rgb)
            raw, bfx = _depth_png_values(rng, h, w), _depth_png_values(rng, h, w)
            label = rng.integers(0, 38, (h, w)).astype(np.uint8)
            label[:5, :5] = 0
            data.append(dict(rgb=rgb, jpg=jpg, raw=raw, bfx=bfx, label=label))
            files = {f"{scene}/image/{stem}.jpg": jpg, f"{scene}/depth/{stem}.png": _png16(raw),
                     f"{scene}/depth_bfx/{stem}.png": _png16(bfx),
                     f"{scene}/intrinsics.txt": b"529.5 0 365 0 529.5 265 0 0 1\n",
                     f"{scene}/scene.txt": b"bedroom", f"{scene}/annotation2Dfinal/index.json": b"{}",
                     f"{scene}/fullres/{stem}.jpg": jpg}
            for name, payload in files.items():
                if name != drop_member:
                    z.writestr(name, payload)

    split_of = {s[0]: s[3] for s in scenes}
    alltrain = alltrain if alltrain is not None else [PREFIX + s for s in split_of if split_of[s] == "train"]
    alltest = alltest if alltest is not None else [PREFIX + s for s in split_of if split_of[s] == "test"]
    if extra_test_entry:  # a listed folder with no image: reported, harmless
        alltest = alltest + [PREFIX + "SUNRGBD/xtion/sun3ddata/mit_32_d507/d507_2/2014-10-11_20-45-47"]
    buf = {}
    b = io.BytesIO()
    tv = np.zeros((1, 1), dtype=[("train", "O"), ("val", "O")])
    tv[0, 0] = (write_mat_cell(alltrain[:1]), write_mat_cell(alltrain[1:]))
    scipy.io.savemat(b, {"alltrain": write_mat_cell(alltrain), "alltest": write_mat_cell(alltest),
                         "trainvalsplit": tv})
    buf["SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat"] = b.getvalue()

    fields = meta_fields or ["sequenceName", "groundtruth3DBB", "Rtilt", "K", "depthpath", "rgbpath",
                             "anno_extrinsics", "depthname", "rgbname", "sensorType"]
    meta = np.zeros((1, len(scenes)), dtype=[(f, "O") for f in fields])
    for k, (scene, stem, _, _) in enumerate(scenes):
        values = {"sequenceName": scene, "groundtruth3DBB": np.zeros((0, 0)), "Rtilt": np.eye(3),
                  "K": np.array([[529.5, 0, 365], [0, 529.5, 265], [0, 0, 1]]),
                  "depthpath": f"{PREFIX}{scene}/depth/{stem}.png",
                  "rgbpath": rgbpath(scene, stem) if rgbpath else f"{PREFIX}{scene}/image/{stem}.jpg",
                  "anno_extrinsics": np.eye(3), "depthname": f"{stem}.png", "rgbname": f"{stem}.jpg",
                  "sensorType": scene.split("/")[1]}
        meta[0, k] = tuple(values[f] for f in fields)
    b = io.BytesIO()
    scipy.io.savemat(b, {"SUNRGBDMeta": meta}, do_compression=True)
    buf["SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat"] = b.getvalue()

    b = io.BytesIO()
    scipy.io.savemat(b, {"seg37list": write_mat_cell(CLASSES)})
    buf["SUNRGBDtoolbox/Metadata/seg37list.mat"] = b.getvalue()

    # v7.3: the struct is a group, each field a (N, 1) dataset of references into #refs#, each
    # referenced array stored with MATLAB's axes reversed. The referenced arrays are created in
    # a shuffled order, so following the references is the only way to the right label.
    seg = tmp / "seg.h5"
    with h5py.File(seg, "w", userblock_size=512) as f:
        refs_group = f.create_group("#refs#")
        st = f.create_group("SUNRGBD2Dseg")
        st.attrs["MATLAB_class"] = np.bytes_("struct")
        n = len(scenes)
        refs = np.empty((n, 1), dtype=object)
        others = np.empty((n, 1), dtype=object)
        for j, k in enumerate(rng.permutation(n)):
            lab = label_override(k, data[k]["label"]) if label_override else data[k]["label"]
            # The stored dtype is not verified (uint8 or double): use both.
            ds = refs_group.create_dataset(f"l{j}", data=lab.T.astype(np.float64 if k % 2 else np.uint8))
            ds.attrs["MATLAB_class"] = np.bytes_("double" if k % 2 else "uint8")
            refs[k, 0] = ds.ref
            other = refs_group.create_dataset(f"a{j}", data=(lab.T.astype(np.uint16) + 100))
            others[k, 0] = other.ref
        shape = seg_shape or (n, 1)
        st.create_dataset("seglabel", data=refs.reshape(-1)[: shape[0] * shape[1]].reshape(shape),
                          dtype=h5py.ref_dtype)
        st.create_dataset("seglabelall", data=others, dtype=h5py.ref_dtype)
    buf["SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat"] = seg.read_bytes()

    with zipfile.ZipFile(toolbox_zip, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("SUNRGBDtoolbox/readData/read3dPoints.m", b"% toolbox code\n")
        for name, payload in buf.items():
            if name != drop_member:
                z.writestr(name, payload)
    return str(images_zip), str(toolbox_zip), data


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sun_raw")
    return build(tmp, scenes=SCENES)


@pytest.fixture(scope="module")
def prepared(fixture, tmp_path_factory):
    images_zip, toolbox_zip, data = fixture
    out = tmp_path_factory.mktemp("sun_out") / "sunrgbd"
    meta = prepare(images_zip, toolbox_zip, str(out), depth="refined", val_fraction=0.25, seed=1,
                   progress=False)
    return out, meta


def expected_depth(v):
    # Per value, in Python integers: (v >> 3) | ((v & 7) << 13) is the 16-bit rotation right by 3.
    rot = v.astype(np.int64) // 8 + (v.astype(np.int64) % 8) * 8192
    return np.where(rot > 8000, np.float32(8.0), rot.astype(np.float32) / np.float32(1000))


def test_depth_decoding_values():
    v = np.array([[0, 8, 8000 << 3, (8000 << 3) + 8, 1, 0xFFFF, 4000 * 8 + 3]], np.uint16)
    got = decode_depth(v)
    assert got.dtype == np.float32
    want = [0.0, 0.001, 8.0, 8.0, 8.0, 8.0, 8.0]   # 1 -> 8192 mm; 0xFFFF -> 65535 mm; both clip
    np.testing.assert_array_equal(got, np.array([want], np.float32))
    assert decode_depth(np.array([[1234 << 3]], np.uint16))[0, 0] == np.float32(1234) / np.float32(1000)


def test_pixels_each_image(fixture, prepared):
    _, _, data = fixture
    out, _ = prepared
    for k, (scene, stem, (h, w), _) in enumerate(SCENES):
        sid = f"{k + 1:06d}"
        rgb = fmt.read_modality(out, "rgb", sid)
        depth = fmt.read_modality(out, "depth", sid)
        label = fmt.read_label(out, sid)
        assert rgb.shape == (h, w, 3) and depth.shape == (h, w) and label.shape == (h, w)
        # The jpg decoded on its own, and close to the array it was encoded from.
        np.testing.assert_array_equal(rgb, np.array(Image.open(io.BytesIO(data[k]["jpg"])).convert("RGB")))
        assert np.abs(rgb.astype(int) - data[k]["rgb"]).mean() < 3
        assert depth.dtype == np.float32
        np.testing.assert_array_equal(depth, expected_depth(data[k]["bfx"]))     # refined = depth_bfx
        src = data[k]["label"]
        np.testing.assert_array_equal(label, np.where(src == 0, 255, src.astype(int) - 1))
    # By hand at the clip boundary of image 2 (row 0): 8000 mm, 8001 mm, low bit set, 0xFFFF.
    d = fmt.read_modality(out, "depth", "000002")[0, :4]
    np.testing.assert_array_equal(d, np.array([8.0, 8.0, 8.0, 8.0], np.float32))
    assert fmt.read_label(out, "000004")[0, 0] == 255


def test_meta_splits_sizes(prepared):
    out, meta = prepared
    assert meta == fmt.read_meta(out)
    assert meta["name"] == "sunrgbd" and meta["classes"] == CLASSES
    assert meta["height"] is None and meta["width"] is None
    assert meta["source"]["sizes"] == [{"height": 427, "width": 561, "count": 3},
                                       {"height": 530, "width": 730, "count": 3}]
    assert meta["source"]["counts"] == {"images": 6, "alltrain": 4, "alltest": 3, "train_images": 4,
                                        "test_images": 2, "split_entries_without_image": 1}
    assert meta["source"]["depth"] == "refined" and meta["source"]["depth_dir"] == "depth_bfx"
    assert fmt.read_split(out, "test") == ["000001", "000004"]
    train, val = fmt.read_split(out, "train"), fmt.read_split(out, "val")
    assert sorted(train + val) == ["000002", "000003", "000005", "000006"] and len(val) == 1
    assert (train, val) == fmt.carve_validation(["000002", "000003", "000005", "000006"], 0.25, 1)
    assert meta["splits"] == {"train": 3, "val": 1, "test": 2}
    assert not list(out.parent.glob(".sunrgbd-toolbox-*"))          # the temporary copy is gone


def test_raw_depth_single_sensor(tmp_path):
    images_zip, toolbox_zip, data = build(tmp_path, scenes=SCENES[1:2] + SCENES[3:5])
    out = tmp_path / "sun_raw_depth"
    meta = prepare(images_zip, toolbox_zip, str(out), depth="raw", val_fraction=0.5, seed=0, progress=False)
    assert (meta["height"], meta["width"]) == (427, 561)
    for k in range(3):
        np.testing.assert_array_equal(fmt.read_modality(out, "depth", f"{k + 1:06d}"),
                                      expected_depth(data[k]["raw"]))


# ----------------------------------------------------------------------------- errors


def _expect_error(tmp_path, images_zip, toolbox_zip, match, exc=ValueError, **kw):
    out = tmp_path / "out"
    args = dict(depth="refined", val_fraction=0.25, seed=0, progress=False)
    args.update(kw)
    with pytest.raises(exc) as e:
        prepare(images_zip, toolbox_zip, str(out), **args)
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert match in msg, msg
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(("out", ".sunrgbd-toolbox-"))]
    assert not leftovers, leftovers
    return msg


def test_error_missing_depth_png(tmp_path):
    scene, stem = SCENES[2][:2]
    images_zip, toolbox_zip, _ = build(tmp_path, drop_member=f"{scene}/depth_bfx/{stem}.png")
    msg = _expect_error(tmp_path, images_zip, toolbox_zip, f"missing {scene}/depth_bfx/{stem}.png (image 3")
    assert msg.startswith(images_zip)
    prepare(images_zip, toolbox_zip, str(tmp_path / "raw_ok"), depth="raw", val_fraction=0.25, seed=0,
            progress=False)   # the raw depth is there


@pytest.mark.parametrize("member", ["SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat",
                                    "SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat",
                                    "SUNRGBDtoolbox/Metadata/seg37list.mat"])
def test_error_missing_toolbox_file(tmp_path, member):
    images_zip, toolbox_zip, _ = build(tmp_path, drop_member=member)
    msg = _expect_error(tmp_path, images_zip, toolbox_zip, "no " + member.split("/", 1)[1])
    assert msg.startswith(toolbox_zip)


def test_error_image_in_both_splits(tmp_path):
    both = [PREFIX + s[0] for s in SCENES]
    images_zip, toolbox_zip, _ = build(tmp_path, alltrain=both)
    _expect_error(tmp_path, images_zip, toolbox_zip, f"image 1 ({SCENES[0][0]}) is in both alltrain and alltest")


def test_error_image_in_no_split(tmp_path):
    images_zip, toolbox_zip, _ = build(tmp_path, alltrain=[PREFIX + SCENES[1][0]])
    _expect_error(tmp_path, images_zip, toolbox_zip, "image 3 (")  # first train image not listed
    _expect_error(tmp_path, images_zip, toolbox_zip, "neither alltrain nor alltest")


def test_error_split_paths_without_sunrgbd(tmp_path):
    images_zip, toolbox_zip, _ = build(tmp_path, alltrain=["/n/fs/sun3d/data/kv1/NYUdata/NYU0001"])
    _expect_error(tmp_path, images_zip, toolbox_zip, "has no 'SUNRGBD' folder")


def test_error_seglabel_count(tmp_path):
    images_zip, toolbox_zip, _ = build(tmp_path, seg_shape=(5, 1))
    _expect_error(tmp_path, images_zip, toolbox_zip, "accepted: 6 object references")


def test_error_label_out_of_range(tmp_path):
    def bad(k, lab):
        lab = lab.copy()
        if k == 3:
            lab[10, 10] = 38
        return lab
    images_zip, toolbox_zip, _ = build(tmp_path, label_override=bad)
    _expect_error(tmp_path, images_zip, toolbox_zip, "seglabel of image 4 has dtype")


def test_error_label_size_mismatch(tmp_path):
    images_zip, toolbox_zip, _ = build(tmp_path, label_override=lambda k, lab: lab[:-1] if k == 1 else lab)
    _expect_error(tmp_path, images_zip, toolbox_zip, "sizes differ (image 2)")


def test_error_meta_missing_field(tmp_path):
    images_zip, toolbox_zip, _ = build(tmp_path, meta_fields=["sequenceName", "depthname", "rgbname"])
    _expect_error(tmp_path, images_zip, toolbox_zip, "SUNRGBDMeta is empty or has no field rgbpath")


def test_error_rgbpath_not_matching(tmp_path):
    images_zip, toolbox_zip, _ = build(tmp_path, rgbpath=lambda scene, stem: f"{PREFIX}{scene}/image/x.jpg")
    _expect_error(tmp_path, images_zip, toolbox_zip, "SUNRGBDMeta(1).rgbpath")


def test_error_not_zip_and_missing(tmp_path):
    images_zip, toolbox_zip, _ = build(tmp_path)
    bogus = tmp_path / "SUNRGBDtoolbox_bad.zip"
    bogus.write_bytes(b"not a zip")
    _expect_error(tmp_path, images_zip, str(bogus), "not a zip file")
    _expect_error(tmp_path, str(tmp_path / "nope.zip"), toolbox_zip, "nope.zip: not found", exc=FileNotFoundError)
    _expect_error(tmp_path, images_zip, toolbox_zip, "accepted: refined, raw", depth="hha")
