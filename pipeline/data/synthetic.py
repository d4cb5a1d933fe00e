"""Procedural synthetic indoor RGB-D scenes: the pipeline's embedded default dataset (no download).

Each scene is a box-shaped room (floor, walls, ceiling) with 3-7 pieces of furniture, a little
unlabeled clutter, and flat decals (a rug, pictures, windows) that have no geometry of their own.
A pinhole camera is ray cast with vectorised numpy (one primary ray per pixel, one shadow ray
towards a point light) and every modality of MODALITIES below is rendered, pixel-aligned.

The classes are chosen so that multimodal fusion matters, which is what CEN is about:
  * APPEARANCE_ONLY pairs share their geometry exactly (a rug *is* the floor plane) and differ
    only in albedo, so depth / normals alone cannot separate them;
  * GEOMETRY_ONLY pairs draw their albedo from one and the same material generator and differ
    only in shape, so RGB / texture alone cannot separate them.

Everything is deterministic: scene i of a stream comes from its own generator seeded by
(seed, stream, i), so it does not depend on how many scenes are generated.
"""

import colorsys
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .format import IGNORE_INDEX, DatasetWriter, carve_validation, encode_normal

VERSION = "1.0"
MODALITIES = ("rgb", "depth", "normal", "shade", "texture", "edge")   # all rendered, aligned
CLASSES = ["floor", "wall", "ceiling", "rug", "picture", "window",
           "cabinet", "table", "bed", "sofa", "ball", "box"]
APPEARANCE_ONLY = [("rug", "floor"), ("picture", "wall"), ("window", "wall")]
GEOMETRY_ONLY = [("ball", "box"), ("table", "cabinet")]
_C = {name: i for i, name in enumerate(CLASSES)}

# Room faces are numbered 2 * axis + side (axis 0=x, 1=y, 2=z; side 0=low, 1=high). World is y-up.
FLOOR, CEILING = 2, 3
WALLS = (0, 1, 4, 5)
_FACE_UV = {0: (2, 1), 1: (0, 2), 2: (0, 1)}  # which world coordinates span a face of each axis
EPS = 1e-6

# ----------------------------------------------------------------------------- scene description


@dataclass
class Material:
    kind: str                  # plain | wood | stripes | checker | noise | picture | window
    colors: np.ndarray         # (k, 3) albedo in [0, 1]
    period: float = 0.2        # pattern period, metres
    angle: float = 0.0         # pattern orientation, radians
    waves: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (m, 4) fu, fv, phase, weight
    size: tuple = (0.0, 0.0)   # extent of a decal (w, h), for frames and mullions
    border: float = 0.0        # frame width, metres (decals only)
    border_color: np.ndarray = field(default_factory=lambda: np.zeros(3))


@dataclass
class Part:
    shape: str                 # box | sphere | cylinder (vertical axis)
    center: np.ndarray         # (3,) world, metres
    half: np.ndarray           # half extents; sphere (r, r, r); cylinder (r, half height, r)
    yaw: float = 0.0           # rotation about the vertical axis (boxes only)


@dataclass
class Object:
    kind: str                  # a class name, or "clutter"
    label: int                 # class index, IGNORE_INDEX for clutter
    material: Material
    parts: list[Part]
    position: np.ndarray       # (x, z) of the footprint centre
    yaw: float
    footprint: tuple           # (w, d), metres
    top: float                 # height of the top surface (clutter can stand on it)


@dataclass
class Decal:
    kind: str
    label: int
    face: int                  # room face it is painted on
    center: np.ndarray         # (u, v) on that face, metres
    size: tuple                # (w, h), metres
    angle: float               # rotation in the face plane (rugs)
    material: Material
    glass: bool                # glazed/specular: the depth sensor mostly reads 0 there


@dataclass
class Camera:
    position: np.ndarray       # (3,) world
    yaw: float                 # 0 looks along +z
    pitch: float               # positive looks down
    roll: float
    hfov: float                # horizontal field of view, radians

    def rotation(self) -> np.ndarray:
        """Columns are the camera axes (x right, y down, z forward) in world coordinates."""
        cp, sp = np.cos(self.pitch), np.sin(self.pitch)
        fwd = np.array([np.sin(self.yaw) * cp, -sp, np.cos(self.yaw) * cp])
        right = np.cross(fwd, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        cr, sr = np.cos(self.roll), np.sin(self.roll)
        return np.stack([cr * right + sr * down, -sr * right + cr * down, fwd], axis=1)


@dataclass
class Light:
    position: np.ndarray       # point light near the ceiling, casts shadows
    intensity: float
    ambient: float
    fill_dir: np.ndarray       # unit direction the fill light travels (no shadows)
    fill: float
    tint: np.ndarray           # (3,) colour of the light, only affects rgb


@dataclass
class Nuisance:
    exposure: float            # global gain of the rgb camera
    gamma: float
    rgb_noise: float           # shot-noise scale
    depth_noise: float         # multiplier of the Kinect-like noise model
    max_range: float           # metres; farther reads 0
    hole_blobs: float          # expected number of random dropout blobs
    edge_dropout: float        # probability of losing a pixel at a depth discontinuity


@dataclass
class Scene:
    room: np.ndarray           # (3,) size (x, y, z) of the room, which spans [0, room]
    camera: Camera
    light: Light
    floor: Material
    wall: Material
    ceiling: Material
    objects: list[Object]
    decals: list[Decal]
    nuisance: Nuisance
    noise_seed: int            # seeds the sensor noise when render() gets no rng

# ----------------------------------------------------------------------------- materials

# Pattern kinds (with probabilities) and colour / period ranges of each material role. With
# `tone`, wood and stripes use a darker shade of the first colour instead of a second free one;
# `angle` fixes the pattern orientation (wallpaper stripes are vertical).
# GEOMETRY_ONLY pairs share a role on purpose: their albedo statistics are identical.
_ROLES = {
    "floor": dict(kinds={"wood": .45, "checker": .3, "plain": .25}, tone=(0.5, 0.8),
                  hue=(0.03, 0.13), sat=(0.1, 0.6), val=(0.3, 0.8), period=(0.08, 0.5)),
    "wall": dict(kinds={"plain": .75, "stripes": .25}, tone=(0.8, 0.93), angle=(0.0, 0.0),
                 hue=(0.0, 1.0), sat=(0.02, 0.3), val=(0.6, 0.95), period=(0.08, 0.3)),
    "ceiling": dict(kinds={"plain": 1.0}, hue=(0.0, 1.0), sat=(0.0, 0.06), val=(0.85, 0.97), period=(1, 1)),
    "rug": dict(kinds={"stripes": .35, "checker": .3, "noise": .35},
                hue=(0.0, 1.0), sat=(0.4, 0.9), val=(0.25, 0.8), period=(0.1, 0.4), border=(0.05, 0.15)),
    "picture": dict(kinds={"picture": 1.0},
                    hue=(0.0, 1.0), sat=(0.3, 1.0), val=(0.2, 1.0), period=(0.1, 0.5), border=(0.03, 0.08)),
    "window": dict(kinds={"window": 1.0},
                   hue=(0.52, 0.64), sat=(0.15, 0.5), val=(0.8, 1.0), period=(1, 1), border=(0.04, 0.08)),
    "furniture": dict(kinds={"wood": .5, "plain": .3, "stripes": .2}, tone=(0.5, 0.8),
                      hue=(0.02, 0.15), sat=(0.1, 0.7), val=(0.15, 0.85), period=(0.03, 0.15)),
    "fabric": dict(kinds={"plain": .4, "stripes": .3, "noise": .3},
                   hue=(0.0, 1.0), sat=(0.1, 0.5), val=(0.25, 0.85), period=(0.05, 0.25)),
    "toy": dict(kinds={"plain": .4, "checker": .3, "stripes": .3},
                hue=(0.0, 1.0), sat=(0.5, 1.0), val=(0.4, 1.0), period=(0.05, 0.2)),
}
_CLASS_ROLE = {"cabinet": "furniture", "table": "furniture", "bed": "fabric", "sofa": "fabric",
               "ball": "toy", "box": "toy"}


def _hsv(rng, r: dict) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.uniform(*r["hue"]), rng.uniform(*r["sat"]), rng.uniform(*r["val"])))


def _pick(rng, probs: dict) -> str:
    keys = list(probs)
    return keys[rng.choice(len(keys), p=np.array(list(probs.values())) / sum(probs.values()))]


def sample_material(rng, role: str, size=(0.0, 0.0)) -> Material:
    r = _ROLES[role]
    kind = _pick(rng, r["kinds"])
    c0 = _hsv(rng, r)
    c1 = c0 * rng.uniform(*r["tone"]) if kind in ("wood", "stripes") and "tone" in r else _hsv(rng, r)
    colors = [c0, c1]
    if kind == "picture":
        colors.append(_hsv(rng, r))
    if kind == "window":  # sky paler at the horizon (bottom) than above, white frame and mullions
        colors = [np.clip(c0 * 1.15 + 0.1, 0, 1), c0, np.full(3, rng.uniform(0.8, 0.95))]
    m = rng.integers(3, 7)
    ang = rng.uniform(0, 2 * np.pi, m)
    freq = rng.uniform(0.3, 2.0, m)
    waves = np.stack([freq * np.cos(ang), freq * np.sin(ang), rng.uniform(0, 2 * np.pi, m), 1 / freq], 1)
    border = rng.uniform(*r["border"]) if "border" in r else 0.0
    if kind == "window":
        border_color = colors[2]
    else:  # picture frames are a dark colour, rug borders a third free colour
        border_color = _hsv(rng, r) * (rng.uniform(0.2, 0.6) if kind == "picture" else 1.0)
    return Material(kind, np.array(colors), rng.uniform(*r["period"]), rng.uniform(*r.get("angle", (0, np.pi))),
                    waves, tuple(size), border, border_color)


def _wave_sum(waves: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sum of a few random sinusoids, in [-1, 1]: cheap smooth noise evaluable at any point."""
    ph = 2 * np.pi * (a[:, None] * waves[:, 0] + b[:, None] * waves[:, 1]) + waves[:, 2]
    return np.sin(ph) @ waves[:, 3] / waves[:, 3].sum()


def albedo(m: Material, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Albedo (N, 3) of material m at surface coordinates (u, v) in metres."""
    ca, sa = np.cos(m.angle), np.sin(m.angle)
    a = (ca * u + sa * v) / m.period
    b = (-sa * u + ca * v) / m.period
    c = m.colors
    if m.kind == "plain":
        w = np.zeros_like(u)
    elif m.kind == "stripes":
        w = np.floor(a) % 2
    elif m.kind == "checker":
        w = (np.floor(a) + np.floor(b)) % 2
    elif m.kind == "wood":  # growth rings along a, bent by low-frequency noise, sharpened
        w = (0.5 + 0.5 * np.sin(2 * np.pi * a + 2.0 * _wave_sum(m.waves, 0.2 * a, 0.2 * b))) ** 3
    elif m.kind in ("noise", "picture"):
        w = 0.5 + 0.5 * _wave_sum(m.waves, a, b)
    elif m.kind == "window":
        w = np.clip(v / max(m.size[1], EPS), 0, 1)
    else:
        raise ValueError(f"unknown material kind {m.kind!r}")
    out = c[0] * (1 - w[:, None]) + c[1] * w[:, None]
    if m.kind == "picture":  # a second smooth field blends in a third colour
        w2 = (0.5 + 0.5 * _wave_sum(m.waves[::-1] * [1.7, 1.7, 1, 1], b, a))[:, None]
        out = out * (1 - w2) + c[2] * w2
    if m.kind == "window":
        bar = (np.abs(u - m.size[0] / 2) < m.border / 2) | (np.abs(v - m.size[1] / 2) < m.border / 2)
        out[bar] = c[2]
    if m.border > 0:
        edge = np.minimum(np.minimum(u, v), np.minimum(m.size[0] - u, m.size[1] - v)) < m.border
        out[edge] = m.border_color
    return out

# ----------------------------------------------------------------------------- scene sampling


def _furniture(kind: str, rng) -> tuple[list[Part], tuple, float]:
    """Parts in object-local coordinates (origin on the floor at the footprint centre)."""
    B = lambda c, h: Part("box", np.array(c, float), np.array(h, float))  # noqa: E731
    if kind == "cabinet":  # a full block standing on the floor
        w, d, h = rng.uniform(0.5, 1.2), rng.uniform(0.35, 0.6), rng.uniform(0.5, 1.8)
        return [B((0, h / 2, 0), (w / 2, h / 2, d / 2))], (w, d), h
    if kind == "table":  # a thin raised slab on four legs: same outline as a cabinet, other geometry
        w, d, h = rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.0), rng.uniform(0.65, 0.8)
        th, leg, inset = rng.uniform(0.03, 0.06), rng.uniform(0.04, 0.07), 0.03
        parts = [B((0, h - th / 2, 0), (w / 2, th / 2, d / 2))]
        for sx in (-1, 1):
            for sz in (-1, 1):
                c = (sx * (w / 2 - leg / 2 - inset), (h - th) / 2, sz * (d / 2 - leg / 2 - inset))
                parts.append(B(c, (leg / 2, (h - th) / 2, leg / 2)))
        return parts, (w, d), h
    if kind == "bed":  # mattress plus headboard
        w, ln, h, hb = rng.uniform(1.0, 1.8), rng.uniform(1.9, 2.1), rng.uniform(0.4, 0.6), rng.uniform(0.8, 1.2)
        return [B((0, h / 2, 0.04), (w / 2, h / 2, ln / 2 - 0.04)),
                B((0, hb / 2, -ln / 2 + 0.04), (w / 2, hb / 2, 0.04))], (w, ln), h
    if kind == "sofa":  # seat, back rest, two arm rests
        w, d = rng.uniform(1.4, 2.2), rng.uniform(0.8, 0.95)
        sh, bh, ah, bt, aw = rng.uniform(0.38, 0.46), rng.uniform(0.75, 0.9), rng.uniform(0.55, 0.65), 0.18, 0.15
        zc, hd = bt / 2, (d - bt) / 2
        return [B((0, sh / 2, zc), (w / 2 - aw, sh / 2, hd)),
                B((0, bh / 2, -d / 2 + bt / 2), (w / 2, bh / 2, bt / 2)),
                B((-w / 2 + aw / 2, ah / 2, zc), (aw / 2, ah / 2, hd)),
                B((w / 2 - aw / 2, ah / 2, zc), (aw / 2, ah / 2, hd))], (w, d), bh
    if kind == "ball" or kind == "box":  # same size distribution: size is no cue either
        r = rng.uniform(0.15, 0.4)
        shape = "sphere" if kind == "ball" else "box"
        return [Part(shape, np.array([0, r, 0.0]), np.full(3, r))], (2 * r, 2 * r), 2 * r
    raise ValueError(f"unknown furniture kind {kind!r}")


def _to_world(parts: list[Part], x: float, z: float, yaw: float) -> list[Part]:
    c, s = np.cos(yaw), np.sin(yaw)
    out = []
    for p in parts:
        lx, ly, lz = p.center
        out.append(Part(p.shape, np.array([x + c * lx + s * lz, ly, z - s * lx + c * lz]), p.half, yaw))
    return out


def _spot_in_view(rng, cam: Camera, room, reach: float, dmin: float, dmax: float):
    """A floor point roughly in front of the camera, or None when it falls too close to a wall."""
    ang = cam.yaw + rng.uniform(-0.6, 0.6)
    dist = rng.uniform(dmin, dmax)
    x, z = cam.position[0] + dist * np.sin(ang), cam.position[2] + dist * np.cos(ang)
    if reach < x < room[0] - reach and reach < z < room[2] - reach:
        return x, z
    return None


def _try_place(rng, kind: str, room, cam: Camera, placed: list) -> Object | None:
    """Size a piece of `kind` and find it a free floor spot in view; None if 40 tries fail."""
    parts, (w, d), top = _furniture(kind, rng)
    reach = 0.5 * np.hypot(w, d)  # any yaw stays inside this circle
    yaw = rng.uniform(0, 2 * np.pi) if kind in ("ball", "box") else \
        rng.integers(0, 4) * np.pi / 2 + rng.normal(0, 0.15)  # furniture is mostly wall-aligned
    for _ in range(40):
        spot = _spot_in_view(rng, cam, room, reach + 0.02, reach + 0.6, reach + 5.0)
        # Circles of 0.8 x the half diagonal: corners may touch, which rooms tolerate.
        if spot and all(np.hypot(spot[0] - x, spot[1] - z) > 0.8 * (reach + r) for x, z, r in placed):
            placed.append((*spot, reach))
            return Object(kind, _C[kind], sample_material(rng, _CLASS_ROLE[kind]),
                          _to_world(parts, *spot, yaw), np.array(spot), yaw, (w, d), top)
    return None


def _place_objects(rng, room, cam: Camera) -> list[Object]:
    kinds = ["cabinet", "table", "bed", "sofa", "ball", "box"]
    chosen = [kinds[k] for k in rng.integers(0, 6, rng.integers(3, 8))]
    # At most one bed and one sofa per room; extra draws become one of the four other kinds.
    for big in ("bed", "sofa"):
        for i in [i for i, k in enumerate(chosen) if k == big][1:]:
            chosen[i] = kinds[rng.choice([0, 1, 4, 5])]
    # Big pieces first: they are the hardest to fit.
    chosen.sort(key=lambda k: kinds.index(k) if k in ("bed", "sofa") else 9)
    placed: list = []
    objects = [o for k in chosen if (o := _try_place(rng, k, room, cam, placed))]
    # A crowded draw in a small room can fail; top up with small pieces to keep >= 3 objects.
    for _ in range(20):
        if len(objects) >= 3:
            break
        o = _try_place(rng, kinds[rng.choice([0, 1, 4, 5])], room, cam, placed)
        objects += [o] if o else []
    return objects


def _place_clutter(rng, room, cam: Camera, objects: list[Object]) -> list[Object]:
    """Small unlabeled things (cups, vases, toys) on tables/cabinets or the floor: the ignore label."""
    supports = [o for o in objects if o.kind in ("table", "cabinet")]
    out = []
    for _ in range(rng.integers(1, 4)):
        shape = ["sphere", "cylinder", "box"][rng.integers(0, 3)]
        r, hh = rng.uniform(0.04, 0.12), rng.uniform(0.04, 0.15)
        half = np.array([r, r if shape == "sphere" else hh, r])
        if supports and rng.random() < 0.6:
            s = supports[rng.integers(0, len(supports))]
            lx = rng.uniform(-1, 1) * max(s.footprint[0] / 2 - r, 0)
            lz = rng.uniform(-1, 1) * max(s.footprint[1] / 2 - r, 0)
            c, si = np.cos(s.yaw), np.sin(s.yaw)
            x, z, base = s.position[0] + c * lx + si * lz, s.position[1] - si * lx + c * lz, s.top
        else:
            spot = _spot_in_view(rng, cam, room, 0.15, 1.0, 4.0)
            if spot is None:
                continue
            (x, z), base = spot, 0.0
        part = Part(shape, np.array([x, base + half[1], z]), half, rng.uniform(0, 2 * np.pi))
        role = ["toy", "fabric", "furniture"][rng.integers(0, 3)]
        out.append(Object("clutter", IGNORE_INDEX, sample_material(rng, role), [part],
                          np.array([x, z]), part.yaw, (2 * r, 2 * r), base + 2 * half[1]))
    return out


def _place_decals(rng, room, cam: Camera) -> list[Decal]:
    W, H, D = room
    decals: list[Decal] = []
    if rng.random() < 0.85:
        size = (rng.uniform(1.4, 2.8), rng.uniform(1.0, 2.0))
        spot = _spot_in_view(rng, cam, room, 0.3, 1.2, 3.5)
        if spot:
            decals.append(Decal("rug", _C["rug"], FLOOR, np.array(spot), size,
                                rng.integers(0, 2) * np.pi / 2 + rng.normal(0, 0.2),
                                sample_material(rng, "rug", size), False))
    # Only the left, right and far walls: the camera stands in front of the near wall (face 4).
    n_pic, n_win = rng.integers(1, 4), rng.choice(3, p=[0.3, 0.5, 0.2])
    for kind, n in (("window", n_win), ("picture", n_pic)):
        for _ in range(n):
            face = (0, 1, 5)[rng.integers(0, 3)]
            length = D if face in (0, 1) else W
            if kind == "window":
                w, h = rng.uniform(0.8, 1.6), rng.uniform(1.0, 1.4)
                v = np.clip(rng.uniform(1.3, 1.7), 0.6 + h / 2, H - 0.15 - h / 2)
            else:
                w, h = rng.uniform(0.4, 1.2), rng.uniform(0.3, 0.9)
                v = np.clip(rng.uniform(1.2, 1.9), 0.3 + h / 2, H - 0.15 - h / 2)
            if length < w + 0.4:
                continue
            u = rng.uniform(w / 2 + 0.2, length - w / 2 - 0.2)
            # Decals on one wall must not overlap, or one would silently hide the other's label.
            if any(d.face == face and abs(d.center[0] - u) < (d.size[0] + w) / 2 + 0.1
                   and abs(d.center[1] - v) < (d.size[1] + h) / 2 + 0.1 for d in decals):
                continue
            glass = rng.random() < (0.7 if kind == "window" else 0.25)
            decals.append(Decal(kind, _C[kind], face, np.array([u, v]), (w, h), 0.0,
                                sample_material(rng, kind, (w, h)), glass))
    return decals


def sample_scene(rng) -> Scene:
    room = np.array([rng.uniform(3.5, 6.0), rng.uniform(2.4, 3.0), rng.uniform(4.0, 7.0)])
    cam = Camera(np.array([rng.uniform(0.35, 0.65) * room[0], rng.uniform(1.2, 1.7), rng.uniform(0.2, 0.6)]),
                 yaw=rng.uniform(-0.45, 0.45), pitch=rng.uniform(0.1, 0.45), roll=rng.normal(0, 0.02),
                 hfov=np.deg2rad(rng.uniform(55, 65)))
    objects = _place_objects(rng, room, cam)
    objects += _place_clutter(rng, room, cam, objects)
    decals = _place_decals(rng, room, cam)
    fill = rng.normal(size=3)
    fill[1] = -abs(fill[1])  # fill light comes from above
    t = rng.uniform(-1, 1)  # colour temperature: warm (t > 0) to cool (t < 0)
    light = Light(np.array([rng.uniform(0.25, 0.75) * room[0], room[1] - rng.uniform(0.1, 0.4),
                            rng.uniform(0.2, 0.8) * room[2]]),
                  intensity=rng.uniform(0.6, 1.3), ambient=rng.uniform(0.12, 0.35),
                  fill_dir=fill / np.linalg.norm(fill), fill=rng.uniform(0.0, 0.3),
                  tint=np.array([1 + 0.12 * t, 1.0, 1 - 0.12 * t]))
    nuisance = Nuisance(exposure=np.exp(rng.uniform(np.log(0.75), np.log(1.35))), gamma=rng.uniform(1.9, 2.5),
                        rgb_noise=rng.uniform(0.005, 0.03), depth_noise=rng.uniform(0.6, 2.0),
                        max_range=rng.uniform(6.0, 10.0), hole_blobs=rng.uniform(0.5, 3.0),
                        edge_dropout=rng.uniform(0.2, 0.7))
    return Scene(room, cam, light, sample_material(rng, "floor"), sample_material(rng, "wall"),
                 sample_material(rng, "ceiling"), objects, decals, nuisance, int(rng.integers(2**62)))

# ----------------------------------------------------------------------------- ray casting


def _yaw_local(v: np.ndarray, yaw: float) -> np.ndarray:
    """World vectors (..., 3) into the frame of a part rotated by yaw about y (inverse of _to_world)."""
    c, s = np.cos(yaw), np.sin(yaw)
    x, z = v[..., 0], v[..., 2]
    return np.stack([c * x - s * z, v[..., 1], s * x + c * z], -1)


def _yaw_world(v: np.ndarray, yaw: float) -> np.ndarray:
    return _yaw_local(v, -yaw)


def _hit_part(p: Part, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Ray parameter t of the first hit of rays o + t d (o (3,) or (N, 3)); inf where missed."""
    if p.shape == "box":  # slab method in the box frame
        ol, dl = _yaw_local(o - p.center, p.yaw), _yaw_local(d, p.yaw)
        dl = np.where(np.abs(dl) < 1e-12, 1e-12, dl)  # no 0/0 for rays parallel to a face
        t1, t2 = (-p.half - ol) / dl, (p.half - ol) / dl
        tn, tf = np.minimum(t1, t2).max(-1), np.maximum(t1, t2).min(-1)
        return np.where((tn <= tf) & (tn > EPS), tn, np.inf)
    oc = o - p.center
    if p.shape == "sphere":
        a, b = (d * d).sum(-1), (oc * d).sum(-1)
        disc = b * b - a * ((oc * oc).sum(-1) - p.half[0] ** 2)
        t = (-b - np.sqrt(np.maximum(disc, 0))) / a
        return np.where((disc >= 0) & (t > EPS), t, np.inf)
    if p.shape == "cylinder":
        r, hh = p.half[0], p.half[1]
        ox, oy, oz = np.broadcast_arrays(oc[..., 0], oc[..., 1], oc[..., 2])
        dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            a, b = dx * dx + dz * dz, ox * dx + oz * dz
            disc = b * b - a * (ox * ox + oz * oz - r * r)
            ts = (-b - np.sqrt(np.maximum(disc, 0))) / a
            side = (a > 0) & (disc >= 0) & (ts > EPS) & (np.abs(oy + ts * dy) <= hh)
            best = np.where(side, ts, np.inf)
            for cap in (-hh, hh):
                tc = (cap - oy) / dy
                ok = (tc > EPS) & ((ox + tc * dx) ** 2 + (oz + tc * dz) ** 2 <= r * r)
                best = np.where(ok & (tc < best), tc, best)
        return best
    raise ValueError(f"unknown shape {p.shape!r}")


def _part_normal_uv(p: Part, x: np.ndarray):
    """Outward world normals and texture coordinates (metres) at hit points x (N, 3)."""
    q = _yaw_local(x - p.center, p.yaw)
    if p.shape == "sphere":  # longitude / colatitude, scaled to metres along the surface
        n = q / np.linalg.norm(q, axis=1, keepdims=True)
        uv = p.half[0] * np.stack([np.arctan2(n[:, 2], n[:, 0]), np.arccos(np.clip(n[:, 1], -1, 1))], 1)
        return _yaw_world(n, p.yaw), uv
    if p.shape == "box":
        axis = np.argmax(np.abs(q) / p.half, axis=1)
    else:  # cylinder: cap if the point is relatively nearer the cap plane than the side
        radial = np.hypot(q[:, 0], q[:, 2]) / p.half[0]
        axis = np.where(np.abs(q[:, 1]) / p.half[1] >= radial, 1, 0)
    n = np.zeros_like(q)
    rows = np.arange(len(q))
    n[rows, axis] = np.sign(q[rows, axis])
    if p.shape == "cylinder":
        side = axis == 0
        n[side] = q[side] * [1, 0, 1] / np.hypot(q[side, 0], q[side, 2])[:, None]
    # Texture plane of each face: the two local axes it spans (cylinder side: arc length, height).
    uv = np.where((axis == 0)[:, None], q[:, [2, 1]], np.where((axis == 1)[:, None], q[:, [0, 2]], q[:, [0, 1]]))
    if p.shape == "cylinder":
        uv[side] = np.stack([p.half[0] * np.arctan2(q[side, 2], q[side, 0]), q[side, 1]], 1)
    return _yaw_world(n, p.yaw), uv


def _hit_room(room: np.ndarray, o: np.ndarray, d: np.ndarray):
    """Exit distance of rays starting inside the room box, and the face (2 * axis + side) hit."""
    with np.errstate(divide="ignore"):
        t = np.where(d > 0, (room - o) / d, np.where(d < 0, -o / d, np.inf))
    axis = np.argmin(t, axis=1)
    rows = np.arange(len(d))
    return t[rows, axis], 2 * axis + (d[rows, axis] > 0)


def _cast(scene: Scene, parts: list[Part], o: np.ndarray, d: np.ndarray):
    """Nearest surface per ray: surf < 6 is a room face, surf = 6 + k is parts[k]."""
    t, surf = _hit_room(scene.room, o, d)
    for k, p in enumerate(parts):
        tk = _hit_part(p, o, d)
        closer = tk < t
        t = np.where(closer, tk, t)
        surf = np.where(closer, 6 + k, surf)
    return t, surf


def _in_shadow(parts: list[Part], x: np.ndarray, n: np.ndarray, light: np.ndarray) -> np.ndarray:
    o = x + 1e-3 * n  # step off the surface so it does not shadow itself
    d = light - o     # unnormalised: the light sits at t = 1
    blocked = np.zeros(len(x), bool)
    for p in parts:
        blocked |= _hit_part(p, o, d) < 1.0
    return blocked

# ----------------------------------------------------------------------------- rendering


def _sobel_magnitude(img: np.ndarray) -> np.ndarray:
    p = np.pad(img, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.hypot(gx, gy)


def _depth_sensor(z: np.ndarray, scene: Scene, glass: np.ndarray, rng) -> np.ndarray:
    """Kinect-like depth: noise growing ~quadratically with range, disparity quantisation, holes."""
    h, w = z.shape
    nz = scene.nuisance
    sigma = nz.depth_noise * (0.0012 + 0.0019 * (z - 0.4) ** 2)  # Nguyen et al. 2012 axial model
    zn = z + sigma * rng.standard_normal(z.shape)
    fb = 580.0 * 0.075  # focal length (px) x baseline (m) of a Kinect v1; 1/8 px disparity steps
    zn = fb / np.maximum(np.round(fb / np.maximum(zn, 0.05) * 8) / 8, 1e-3)
    hole = (z > nz.max_range) | (z < 0.4) | (glass & (rng.random(z.shape) < 0.9))
    # The projector/camera baseline loses pixels at depth discontinuities.
    jump = np.zeros_like(z)
    jump[:, 1:] = np.abs(np.diff(z, axis=1))
    jump[1:, :] = np.maximum(jump[1:, :], np.abs(np.diff(z, axis=0)))
    hole |= (jump > 0.05 * z) & (rng.random(z.shape) < nz.edge_dropout)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(rng.poisson(nz.hole_blobs)):  # specular / absorbing patches
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.02, 0.08, 2) * w
        hole |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    return np.where(hole, 0.0, zn)


def render(scene: Scene, height: int, width: int, rng=None, clean: bool = False) -> dict[str, np.ndarray]:
    """All of MODALITIES plus "label", as stored (uint8 / uint16 depth in mm).

    rng drives the sensor noise (default: seeded by scene.noise_seed, so renders are repeatable);
    clean=True skips sensor noise and depth holes, leaving exact geometry.
    """
    rng = np.random.default_rng(scene.noise_seed) if rng is None else rng
    cam = scene.camera
    f = (width / 2) / np.tan(cam.hfov / 2)
    yy, xx = np.mgrid[0:height, 0:width]
    d_cam = np.stack([(xx + 0.5 - width / 2) / f, (yy + 0.5 - height / 2) / f, np.ones_like(xx, float)], -1)
    R = cam.rotation()
    d = d_cam.reshape(-1, 3) @ R.T  # z component in the camera frame is 1: t is the z-depth
    o = cam.position
    parts = [p for ob in scene.objects for p in ob.parts]
    owner = [ob for ob in scene.objects for _ in ob.parts]
    t, surf = _cast(scene, parts, o, d)
    x = o + t[:, None] * d

    N = len(t)
    normal, alb = np.zeros((N, 3)), np.zeros((N, 3))
    label = np.zeros(N, np.uint8)
    glass = np.zeros(N, bool)
    room_face = {FLOOR: (scene.floor, _C["floor"]), CEILING: (scene.ceiling, _C["ceiling"])}
    for face in range(6):
        m = surf == face
        if not m.any():
            continue
        axis, side = divmod(face, 2)
        normal[m, axis] = 1.0 if side == 0 else -1.0  # room faces point inwards
        mat, lab = room_face.get(face, (scene.wall, _C["wall"]))
        uv = x[m][:, _FACE_UV[axis]]
        alb[m] = albedo(mat, uv[:, 0], uv[:, 1])
        label[m] = lab
        for dc in scene.decals:  # paint over the face; geometry is untouched
            if dc.face != face:
                continue
            c, s = np.cos(dc.angle), np.sin(dc.angle)
            rel = uv - dc.center
            lu, lv = c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1]
            inside = (np.abs(lu) <= dc.size[0] / 2) & (np.abs(lv) <= dc.size[1] / 2)
            if inside.any():
                idx = np.flatnonzero(m)[inside]
                alb[idx] = albedo(dc.material, lu[inside] + dc.size[0] / 2, lv[inside] + dc.size[1] / 2)
                label[idx] = dc.label
                glass[idx] = dc.glass
    for k, (p, ob) in enumerate(zip(parts, owner)):
        m = surf == 6 + k
        if m.any():
            normal[m], uv = _part_normal_uv(p, x[m])
            alb[m] = albedo(ob.material, uv[:, 0], uv[:, 1])
            label[m] = ob.label

    # Lambertian shading: shadowed point light with 1/(1 + (r/4)^2) falloff, fill light, ambient.
    L = scene.light
    to_l = L.position - x
    dist = np.linalg.norm(to_l, axis=1)
    ndl = np.maximum((normal * to_l).sum(1) / dist, 0)
    lit = np.flatnonzero(ndl > 0)
    ndl[lit[_in_shadow(parts, x[lit], normal[lit], L.position)]] = 0
    shade = (L.ambient + L.intensity * ndl / (1 + (dist / 4) ** 2)
             + L.fill * np.maximum(-(normal @ L.fill_dir), 0))
    shade = np.clip(shade, 0, 1)

    nz = scene.nuisance
    lin = alb * shade[:, None] * L.tint * nz.exposure
    if not clean:  # shot noise (~sqrt of signal) plus a read-noise floor
        lin = lin + nz.rgb_noise * np.sqrt(np.maximum(lin, 0) + 0.01) * rng.standard_normal(lin.shape)
    rgb = np.clip(lin, 0, 1) ** (1 / nz.gamma)

    z = t.reshape(height, width)
    depth_m = z if clean else _depth_sensor(z, scene, glass.reshape(height, width), rng)
    alb_img = alb.reshape(height, width, 3)
    lum = alb_img @ np.array([0.299, 0.587, 0.114])
    edge = np.clip(_sobel_magnitude(lum) / 2, 0, 1)  # a full 0 -> 1 step (Sobel 4) saturates
    to_u8 = lambda a: np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    return {
        "rgb": to_u8(rgb.reshape(height, width, 3)),
        "depth": np.round(np.clip(depth_m * 1000, 0, 65535)).astype(np.uint16),
        "normal": encode_normal((normal @ R).reshape(height, width, 3)),  # world -> camera frame
        "shade": to_u8(shade.reshape(height, width)),
        "texture": to_u8(alb_img),
        "edge": to_u8(edge),
        "label": label.reshape(height, width),
    }

# ----------------------------------------------------------------------------- dataset


STREAMS = {"trainval": 0, "test": 1}  # disjoint scene streams: test scenes never depend on n_trainval


def scene_at(seed: int, index: int, stream: str = "trainval") -> Scene:
    """Scene `index` of a stream; independent of how many scenes are generated."""
    return sample_scene(np.random.default_rng([seed, STREAMS[stream], index]))


def generate(root: str, *, n_trainval: int, val_fraction: float, n_test: int,
             height: int, width: int, seed: int, progress: bool = False) -> dict:
    """Render the dataset into `root` (format.DatasetWriter layout) and return its meta."""
    if seed < 0 or n_trainval < 2 or n_test < 1 or height < 1 or width < 1:
        raise ValueError("need seed >= 0, n_trainval >= 2, n_test >= 1 and a positive size")
    args = dict(n_trainval=n_trainval, val_fraction=val_fraction, n_test=n_test,
                height=height, width=width, seed=seed)
    ids: dict[str, list[str]] = {s: [] for s in STREAMS}
    total, done, t0 = n_trainval + n_test, 0, time.time()
    with DatasetWriter(root) as w:
        for stream, n in (("trainval", n_trainval), ("test", n_test)):
            for i in range(n):
                out = render(scene_at(seed, i, stream), height, width)
                sid = f"{stream}_{i:06d}"
                label = out.pop("label")
                w.write_sample(sid, out, label)
                ids[stream].append(sid)
                done += 1
                if progress and (done % 50 == 0 or done == total):
                    print(f"synthetic: {done}/{total} scenes, {time.time() - t0:.1f}s", file=sys.stderr)
        train, val = carve_validation(ids["trainval"], val_fraction, seed)
        meta = w.finish({"name": "synthetic-indoor", "classes": list(CLASSES), "height": height,
                         "width": width,
                         "source": {"generator": "pipeline.data.synthetic", "version": VERSION, "args": args}},
                        {"train": train, "val": val, "test": ids["test"]})
    return meta
