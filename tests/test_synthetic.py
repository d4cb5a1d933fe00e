"""The synthetic RGB-D scene generator: determinism, format, nuisances, and the fusion design."""

import dataclasses
import os

import numpy as np
import pytest

from pipeline.data import format as F
from pipeline.data import synthetic as S

C = {name: i for i, name in enumerate(S.CLASSES)}
H, W = 48, 64


def _files(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            path = os.path.join(dirpath, n)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _gen(root, n_trainval=6, n_test=3, seed=0, size=(24, 32)):
    return S.generate(str(root), n_trainval=n_trainval, val_fraction=0.34, n_test=n_test,
                      height=size[0], width=size[1], seed=seed)


@pytest.fixture(scope="module")
def clean_renders():
    """Scenes of one seed, rendered without sensor noise (many tests only need the truth)."""
    return [S.render(S.scene_at(3, i), 36, 48, clean=True) for i in range(120)]


def test_generate_is_deterministic(tmp_path):
    meta = _gen(tmp_path / "a")
    _gen(tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 1 + 3 + 9 * 7 and a == b  # meta, 3 splits, 9 samples x (6 modalities + label)
    _gen(tmp_path / "c", seed=1)
    c = _files(tmp_path / "c")
    assert c.keys() == a.keys()
    assert all(c[k] != a[k] for k in a if k.startswith("rgb/"))
    assert meta["source"]["generator"] == "pipeline.data.synthetic"
    assert meta["source"]["version"] == S.VERSION
    assert meta["source"]["args"] == dict(n_trainval=6, val_fraction=0.34, n_test=3,
                                          height=24, width=32, seed=0)
    assert F.read_meta(tmp_path / "a") == meta


def test_splits(tmp_path):
    root = tmp_path / "d"
    meta = _gen(root)
    train, val, test = (F.read_split(root, s) for s in F.SPLITS)
    assert meta["splits"] == {"train": 4, "val": 2, "test": 3}
    assert sorted(train + val) == [f"trainval_{i:06d}" for i in range(6)]
    assert test == [f"test_{i:06d}" for i in range(3)]
    assert (train, val) == F.carve_validation(sorted(train + val), 0.34, 0)


def test_scene_independent_of_dataset_size(tmp_path):
    _gen(tmp_path / "small", n_trainval=3, n_test=2)
    _gen(tmp_path / "big", n_trainval=5, n_test=1)
    small, big = _files(tmp_path / "small"), _files(tmp_path / "big")
    shared = [k for k in small if k.endswith(("trainval_000002.png", "test_000000.png"))]
    assert len(shared) == 14
    assert all(small[k] == big[k] for k in shared)
    assert small["rgb/trainval_000001.png"] != small["rgb/trainval_000002.png"]


def test_dtypes_and_shapes(tmp_path):
    out = S.render(S.scene_at(0, 0), 30, 40)
    assert set(out) == set(S.MODALITIES) | {"label"}
    for name in S.MODALITIES:
        spec = F.MODALITIES[name]
        shape = (30, 40) if spec["channels"] == 1 else (30, 40, spec["channels"])
        assert out[name].dtype == np.dtype(spec["dtype"][0]) and out[name].shape == shape, name
    assert out["label"].dtype == np.uint8 and out["label"].shape == (30, 40)
    # Non-square, odd sizes work and the files read back the same way.
    root = tmp_path / "d"
    meta = _gen(root, size=(17, 31))
    assert meta["modalities"] == list(S.MODALITIES) and meta["classes"] == S.CLASSES
    for name in S.MODALITIES:
        assert F.read_modality(root, name, "test_000001").shape[:2] == (17, 31)


def test_depth_and_normals_are_physical():
    scene = S.scene_at(0, 5)
    out = S.render(scene, H, W, clean=True)
    z = F.depth_to_metres(out["depth"])
    diag = np.linalg.norm(scene.room)
    assert z.min() > 0.05 and z.max() < diag  # inside the room, in metres
    n = F.decode_normal(out["normal"])
    assert np.allclose(np.linalg.norm(n, axis=-1), 1, atol=0.02)
    # Every visible surface faces the camera: normal . ray < 0 at each pixel.
    f = (W / 2) / np.tan(scene.camera.hfov / 2)
    yy, xx = np.mgrid[0:H, 0:W]
    ray = np.stack([(xx + 0.5 - W / 2) / f, (yy + 0.5 - H / 2) / f, np.ones((H, W))], -1)
    assert ((n * ray).sum(-1) < 0.02).all()
    floor = out["label"] == C["floor"]
    assert floor.any()
    # The floor normal is world-up expressed in the camera frame (about -y, tilted by the pitch).
    up_cam = scene.camera.rotation().T @ [0.0, 1.0, 0.0]
    assert up_cam[1] < -0.85
    assert np.allclose(n[floor], up_cam, atol=0.02)


def test_class_coverage():
    present = np.zeros(256, bool)
    for i in range(40):
        present[np.unique(S.render(S.scene_at(0, i), H, W)["label"])] = True
    assert present[:len(S.CLASSES)].sum() >= 10
    assert present[F.IGNORE_INDEX]
    assert not present[len(S.CLASSES):F.IGNORE_INDEX].any()


def test_sensor_nuisances():
    near, far, holes, glass = [], [], 0, []
    for i in range(12):
        scene = S.scene_at(0, i)
        noisy, clean = S.render(scene, H, W), S.render(scene, H, W, clean=True)
        # Nuisances touch the sensors (rgb, depth) only, never the intrinsic images or labels.
        for k in ("normal", "shade", "texture", "edge", "label"):
            assert np.array_equal(noisy[k], clean[k]), k
        assert not np.array_equal(noisy["rgb"], clean["rgb"])
        assert np.abs(noisy["rgb"].astype(int) - clean["rgb"]).mean() < 10
        assert (clean["depth"] > 0).all()
        holes += (noisy["depth"] == 0).sum()
        zc, zn = F.depth_to_metres(clean["depth"]), F.depth_to_metres(noisy["depth"])
        ok = zn > 0
        err = np.abs(zn - zc)[ok]
        near.append(err[zc[ok] < 2.0])
        far.append(err[zc[ok] > 4.0])
        for dc in scene.decals:
            if dc.glass:  # glazed decals mostly read 0 where visible
                m = clean["label"] == dc.label
                if dc.kind == "window" and m.sum() > 20 and sum(d.kind == "window" for d in scene.decals) == 1:
                    glass.append((noisy["depth"][m] == 0).mean())
    near, far = np.concatenate(near), np.concatenate(far)
    assert holes > 0.005 * 12 * H * W
    assert len(near) > 500 and len(far) > 500
    assert np.median(far) > 2 * np.median(near) > 0  # noise grows with range
    assert glass and min(glass) > 0.7


def test_decals_change_appearance_only():
    """APPEARANCE_ONLY: removing rug/pictures/windows leaves geometry and shading untouched."""
    decal_classes = [C[a] for a, _ in S.APPEARANCE_ONLY]
    checked = set()
    for i in range(30):
        scene = S.scene_at(0, i)
        with_d = S.render(scene, H, W, clean=True)
        without = S.render(dataclasses.replace(scene, decals=[]), H, W, clean=True)
        for k in ("depth", "normal", "shade"):
            assert np.array_equal(with_d[k], without[k]), k
        region = np.isin(with_d["label"], decal_classes)
        for k in ("label", "texture", "rgb"):  # nothing else changes...
            assert np.array_equal(with_d[k][~region], without[k][~region]), k
        for a, b in S.APPEARANCE_ONLY:  # ...and below each decal lies its supporting surface
            m = with_d["label"] == C[a]
            assert (without["label"][m] == C[b]).all()
            if m.sum() >= 10:
                checked.add(a)
                differs = lambda k: (with_d[k][m] != without[k][m]).any(-1).mean()  # noqa: E731
                assert differs("texture") > 0.5 and differs("rgb") > 0.5, a
    assert checked == {a for a, _ in S.APPEARANCE_ONLY}


def _albedo_stats(renders, cls):
    """Per scene where `cls` covers >= 10 px: mean albedo (r, g, b) and mean chroma (max - min)."""
    rows = []
    for out in renders:
        m = out["label"] == C[cls]
        if m.sum() >= 10:
            px = out["texture"][m].astype(float) / 255
            rows.append(np.r_[px.mean(0), (px.max(1) - px.min(1)).mean()])
    return np.array(rows)


def _z(renders, a, b):
    A, B = _albedo_stats(renders, a), _albedo_stats(renders, b)
    assert len(A) >= 20 and len(B) >= 20, (a, b, len(A), len(B))
    se = np.sqrt(A.var(0, ddof=1) / len(A) + B.var(0, ddof=1) / len(B))
    return np.abs(A.mean(0) - B.mean(0)) / se


def test_geometry_only_pairs_share_albedo_statistics(clean_renders):
    for a, b in S.GEOMETRY_ONLY:
        assert _z(clean_renders, a, b).max() < 4.5, (a, b)
    # The statistic has power: appearance-only pairs (and unrelated materials) are told apart.
    for a, b in S.APPEARANCE_ONLY + [("ball", "cabinet")]:
        assert _z(clean_renders, a, b).max() > 6, (a, b)


def test_geometry_only_pairs_differ_in_geometry(clean_renders):
    # ball vs box: a cube shows at most 3 flat faces (3 normals), a sphere a spread of them.
    n_box = n_ball = 0
    for i, out in enumerate(clean_renders):
        kinds = [o.kind for o in S.scene_at(3, i).objects]
        for cls in ("box", "ball"):
            m = out["label"] == C[cls]
            if kinds.count(cls) == 1 and m.sum() >= 20:
                distinct = len(np.unique(out["normal"][m], axis=0))
                if cls == "box":
                    assert distinct <= 3
                    n_box += 1
                else:
                    assert distinct >= 10
                    n_ball += 1
    assert n_box >= 5 and n_ball >= 5
    # table vs cabinet: seen from standing height a table is mostly its top (normal up),
    # a cabinet mostly its vertical sides.
    up = {"table": [], "cabinet": []}
    for out in clean_renders:
        n = F.decode_normal(out["normal"])
        for cls in up:
            m = out["label"] == C[cls]
            if m.sum() >= 10:
                # Camera-frame up is roughly -y (the camera pitches down by at most ~26 deg).
                up[cls].append((n[m][:, 1] < -0.85).mean())
    assert np.mean(up["table"]) > np.mean(up["cabinet"]) + 0.3


def test_generate_argument_errors(tmp_path):
    with pytest.raises(ValueError):
        _gen(tmp_path / "x", n_trainval=1)
    with pytest.raises(ValueError):
        _gen(tmp_path / "x", seed=-1)
    assert not os.path.exists(tmp_path / "x")
