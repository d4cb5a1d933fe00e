"""params.yaml -> typed, validated settings; and the record of which keys each stage reads.

`load_params()` validates the WHOLE file before any work (unknown keys, types, ranges, every
profile), raising ParamsError with one line naming the key, the value and what is accepted.
Stages then take values through `Params.read(key)`, which records the key: DVC reruns a stage
only for the params its dvc.yaml entry lists, so what a stage reads must equal what it
declares. tests/test_params.py proves it for every stage (and the end-to-end test checks the
keys recorded by the real stage processes, written where CEN_PARAMS_TRACE points).
"""
from __future__ import annotations

import atexit
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from .data.sources import ARTEFACTS
from .models.registry import Variant, get_variant
from .models.segnet import ModelSpec

# Prepared datasets the segmentation stages can read (data/<name>), and their modalities.
# (Taskonomy is prepared too, for image translation; it has no segmentation labels.)
DATASETS = {
    "synthetic": ("rgb", "depth", "normal", "shade", "texture", "edge"),
    "nyudv2": ("rgb", "depth"),
    "sunrgbd": ("rgb", "depth"),
}
# ImageNet initialisation: torchvision's ResNets, recognised by their block counts.
RESNETS = {(3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
WEIGHTS_DIR = "data/weights"
TASKONOMY_DOMAINS = ("rgb", "normal", "reshading", "depth_euclidean", "depth_zbuffer",
                     "principal_curvature", "edge_occlusion", "edge_texture")


class ParamsError(ValueError):
    """A bad value in params.yaml (one line: key, value, what is accepted)."""


# ---------------------------------------------------------------------------------------------
# Typed sections. Each field's check is (predicate, "what is accepted").

def _int(lo=None):
    ok = lambda v: isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo)
    return ok, "an integer" + (f" >= {lo}" if lo is not None else "")


def _num(lo=None, hi=None, lo_open=False, hi_open=True):
    def ok(v):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v:
            return False
        if lo is not None and (v <= lo if lo_open else v < lo):
            return False
        return hi is None or (v < hi if hi_open else v <= hi)
    lb = "" if lo is None else ("(" if lo_open else "[") + str(lo)
    ub = "" if hi is None else str(hi) + (")" if hi_open else "]")
    rng = f" in {lb or '(-inf'}, {ub or 'inf)'}" if (lo is not None or hi is not None) else ""
    return ok, "a number" + rng


def _int_or_null():
    ok = lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool))
    return ok, "an integer or null"


def _bool():
    return (lambda v: isinstance(v, bool)), "true or false"


def _choice(*options):
    return (lambda v: v in options), " or ".join(map(str, options))


def _url_or_null():
    ok = lambda v: v is None or (isinstance(v, str) and v.split("://")[0] in ("http", "https", "file")
                                 and "://" in v)
    return ok, "null (the built-in URLs) or an http://, https:// or file:// URL"


def _crop():
    def ok(v):
        if v is None:
            return True
        if not (isinstance(v, list) and len(v) == 4 and all(_int(0)[0](x) for x in v)):
            return False
        top, bottom, left, right = v
        return top < bottom <= 480 and left < right <= 640
    return ok, "null or [top, bottom, left, right] with top < bottom <= 480, left < right <= 640"


def _int_list(n=None, lo=1):
    def ok(v):
        return (isinstance(v, list) and len(v) >= 1 and (n is None or len(v) == n)
                and all(_int(lo)[0](x) for x in v))
    size = f"{n} " if n else "a non-empty list of "
    return ok, f"{size}integers >= {lo}"


@dataclass(frozen=True)
class SyntheticParams:
    n_trainval: int
    val_fraction: float
    n_test: int
    height: int
    width: int
    seed: int


@dataclass(frozen=True)
class TrainParams:
    epochs: int
    batch_size: int
    lr_encoder: float
    lr_decoder: float
    lr_halve_every: int
    scale_min: float
    scale_max: float
    flip: bool
    gamma_log_every: int
    # The official code keeps every BN in eval mode when fine-tuning from ImageNet (running
    # statistics frozen, γ and β still trained); the paper does not say. Batch 6 gives noisy
    # statistics, which is why the paper profile follows the code; from scratch (mini) needs
    # them learned.
    freeze_bn_stats: bool


@dataclass(frozen=True)
class EvalParams:
    batch_size: int


@dataclass(frozen=True)
class OptimParams:
    momentum: float
    weight_decay: float


@dataclass(frozen=True)
class MethodParams:
    detach_ensemble: bool


@dataclass(frozen=True)
class SourcesParams:
    retries: int
    timeout_s: float
    mirrors: dict        # artefact name -> None or a URL that replaces its built-in URLs


@dataclass(frozen=True)
class NYUDv2Params:
    crop: tuple[int, ...] | None   # (top, bottom, left, right), half-open; None: no crop
    depth: str                     # inpainted | raw
    val_fraction: float
    seed: int


@dataclass(frozen=True)
class SUNRGBDParams:
    depth: str                     # refined (depth_bfx) | raw
    val_fraction: float
    seed: int


@dataclass(frozen=True)
class TaskonomyParams:
    domains: tuple[str, ...]


@dataclass(frozen=True)
class ReportParams:
    alpha: float
    figure5_layer: int | None   # None: the paper's position (first 3x3 BN of ResNet stage 3)
    figure5_seed: int


CHECKS = {
    SyntheticParams: dict(n_trainval=_int(2), val_fraction=_num(0, 1, lo_open=True),
                          n_test=_int(1), height=_int(16), width=_int(16), seed=_int(0)),
    TrainParams: dict(epochs=_int(1), batch_size=_int(1), lr_encoder=_num(0, lo_open=True),
                      lr_decoder=_num(0, lo_open=True), lr_halve_every=_int(1),
                      scale_min=_num(0, lo_open=True), scale_max=_num(0, lo_open=True),
                      flip=_bool(), gamma_log_every=_int(1), freeze_bn_stats=_bool()),
    EvalParams: dict(batch_size=_int(1)),
    OptimParams: dict(momentum=_num(0, 1), weight_decay=_num(0)),
    MethodParams: dict(detach_ensemble=_bool()),
    ReportParams: dict(alpha=_num(0, 0.5, lo_open=True, hi_open=False), figure5_layer=_int_or_null(),
                       figure5_seed=_int(0)),
    ModelSpec: dict(layers=_int_list(4), width=_int(1), decoder_widths=_int_list(4),
                    dropout=_num(0, 1), gamma_init=_num(0, lo_open=True),
                    init=_choice("scratch", "imagenet")),
    SourcesParams: dict(retries=_int(0), timeout_s=_num(0, lo_open=True),
                        mirrors=((lambda v: isinstance(v, dict)), "a mapping")),
    NYUDv2Params: dict(crop=_crop(), depth=_choice("inpainted", "raw"),
                       val_fraction=_num(0, 1, lo_open=True), seed=_int(0)),
    SUNRGBDParams: dict(depth=_choice("refined", "raw"), val_fraction=_num(0, 1, lo_open=True),
                        seed=_int(0)),
    TaskonomyParams: dict(domains=((lambda v: isinstance(v, list) and len(v) >= 1
                                    and len(set(v)) == len(v)
                                    and all(d in TASKONOMY_DOMAINS for d in v)),
                                   "a non-empty list of distinct domains from "
                                   + ", ".join(TASKONOMY_DOMAINS))),
}


def _fail(key: str, value: Any, accepted: str) -> ParamsError:
    return ParamsError(f"params.yaml: {key} = {value!r} is invalid; accepted: {accepted}")


def _mapping(key: str, raw: Any, allowed: list[str]) -> dict:
    if not isinstance(raw, dict):
        raise _fail(key, raw, f"a mapping with keys {', '.join(allowed)}")
    unknown = [k for k in raw if k not in allowed]
    if unknown:
        raise ParamsError(f"params.yaml: unknown key {key + '.' if key else ''}{unknown[0]}; "
                          f"accepted keys here: {', '.join(allowed)}")
    missing = [k for k in allowed if k not in raw]
    if missing:
        raise ParamsError(f"params.yaml: missing key {key + '.' if key else ''}{missing[0]}")
    return raw


def _section(cls, key: str, raw: Any):
    raw = _mapping(key, raw, [f.name for f in fields(cls)])
    values = {}
    for f in fields(cls):
        ok, accepted = CHECKS[cls][f.name]
        v = raw[f.name]
        if not ok(v):
            raise _fail(f"{key}.{f.name}", v, accepted)
        values[f.name] = tuple(v) if isinstance(v, list) else float(v) if f.type == "float" else v
    return cls(**values)


PROFILE_SECTIONS = {"synthetic": SyntheticParams, "model": ModelSpec, "train": TrainParams,
                    "eval": EvalParams}
TOP_SECTIONS = {"optim": OptimParams, "method": MethodParams, "report": ReportParams,
                "sources": SourcesParams}
PREPARE_SECTIONS = {"nyudv2": NYUDv2Params, "sunrgbd": SUNRGBDParams, "taskonomy": TaskonomyParams}
TOP_KEYS = ["lambda", "theta", "profile", "modalities", *TOP_SECTIONS, "prepare", "profiles"]


def resnet_depth(spec: ModelSpec) -> int | None:
    """101 / 152 when the encoder is torchvision's ResNet of that depth (ImageNet weights fit)."""
    return RESNETS.get(tuple(spec.layers)) if spec.width == 64 else None


def weights_path(spec: ModelSpec) -> str | None:
    """Prepared ImageNet weights the encoder starts from, or None (trained from scratch)."""
    return f"{WEIGHTS_DIR}/resnet{resnet_depth(spec)}.pt" if spec.init == "imagenet" else None


def _profile(name: str, raw: Any) -> dict:
    key = f"profiles.{name}"
    raw = _mapping(key, raw, ["dataset", "seeds", *PROFILE_SECTIONS])
    if raw["dataset"] not in DATASETS:
        raise _fail(f"{key}.dataset", raw["dataset"], ", ".join(DATASETS))
    seeds = raw["seeds"]
    if not (_int_list(lo=0)[0](seeds) and len(set(seeds)) == len(seeds)):
        raise _fail(f"{key}.seeds", seeds, "a non-empty list of distinct integers >= 0")
    out = {"dataset": raw["dataset"], "seeds": tuple(seeds)}
    for sec, cls in PROFILE_SECTIONS.items():
        out[sec] = _section(cls, f"{key}.{sec}", raw[sec])
    tr = out["train"]
    if tr.scale_max < tr.scale_min:
        raise _fail(f"{key}.train.scale_max", tr.scale_max, f"a number >= scale_min ({tr.scale_min})")
    spec = out["model"]
    if spec.init == "imagenet" and resnet_depth(spec) is None:
        raise _fail(f"{key}.model.init", spec.init,
                    "scratch, or imagenet with layers [3, 4, 23, 3] (ResNet-101) or "
                    f"[3, 8, 36, 3] (ResNet-152) and width 64 (got layers {list(spec.layers)}, "
                    f"width {spec.width})")
    return out


def _sources(raw: Any) -> SourcesParams:
    src = _section(SourcesParams, "sources", raw)
    names = [a.name for a in ARTEFACTS]
    _mapping("sources.mirrors", src.mirrors, names)       # exactly one entry per artefact
    ok, accepted = _url_or_null()
    for name in names:
        if not ok(src.mirrors[name]):
            raise _fail(f"sources.mirrors.{name}", src.mirrors[name], accepted)
    return src


def validate(raw: Any) -> dict:
    """The whole params tree, validated and typed (raises ParamsError)."""
    raw = _mapping("", raw, TOP_KEYS)
    tree: dict[str, Any] = {}
    if not _num(0)[0](raw["lambda"]):
        raise _fail("lambda", raw["lambda"], "a number >= 0 (the ℓ1 weight of Eq. 4)")
    if not _num(0, 1)[0](raw["theta"]):
        raise _fail("theta", raw["theta"], "a number in [0, 1) (the threshold of Eq. 6)")
    tree["lambda"], tree["theta"] = float(raw["lambda"]), float(raw["theta"])
    profiles = raw["profiles"]
    if not isinstance(profiles, dict) or not profiles:
        raise _fail("profiles", profiles, "a mapping from profile name to its sizes")
    tree["profiles"] = {name: _profile(name, p) for name, p in profiles.items()}
    if raw["profile"] not in tree["profiles"]:
        raise _fail("profile", raw["profile"], ", ".join(tree["profiles"]))
    tree["profile"] = raw["profile"]
    dataset = tree["profiles"][raw["profile"]]["dataset"]
    mods, have = raw["modalities"], DATASETS[dataset]
    if (not isinstance(mods, list) or not 2 <= len(mods) <= 4 or len(set(mods)) != len(mods)
            or not all(isinstance(x, str) for x in mods)):
        raise _fail("modalities", mods, f"a list of 2 to 4 distinct names from {', '.join(have)}")
    for x in mods:
        if x not in have:
            raise _fail("modalities", mods, f"modalities of dataset {dataset!r} (profile "
                                            f"{raw['profile']!r}): {', '.join(have)} ({x!r} is "
                                            f"not one of them)")
    tree["modalities"] = tuple(mods)
    for sec, cls in TOP_SECTIONS.items():
        tree[sec] = _sources(raw[sec]) if cls is SourcesParams else _section(cls, sec, raw[sec])
    prep = _mapping("prepare", raw["prepare"], list(PREPARE_SECTIONS))
    tree["prepare"] = {k: _section(cls, f"prepare.{k}", prep[k]) for k, cls in PREPARE_SECTIONS.items()}
    return tree


# ---------------------------------------------------------------------------------------------

class Params:
    """Validated params; `read(key)` returns a value and records that the stage used it."""

    def __init__(self, tree: dict, path: Path):
        self.tree, self.path, self.reads = tree, path, []

    def read(self, key: str) -> Any:
        node: Any = self.tree
        for part in key.split("."):
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        if key not in self.reads:
            self.reads.append(key)
        return node

    def profile_section(self, section: str) -> Any:
        return self.read(f"profiles.{self.read('profile')}.{section}")


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found; run from the repository root (where params.yaml is)")
    raw = YAML(typ="safe", pure=True).load(path.read_text())
    params = Params(validate(raw), path)
    trace = os.environ.get("CEN_PARAMS_TRACE")
    if trace:
        atexit.register(_write_trace, params, Path(trace))
    return params


def _write_trace(params: Params, trace: Path) -> None:
    # One JSON line per process: which stage (argv) read which keys.
    import sys
    trace.parent.mkdir(parents=True, exist_ok=True)
    with open(trace, "a") as f:
        f.write(json.dumps({"argv": sys.argv, "reads": params.reads}) + "\n")


# ---------------------------------------------------------------------------------------------
# What each kind of stage reads. dvc.yaml (written by pipeline.dvcgen) must declare exactly this.

@dataclass(frozen=True)
class TrainSettings:
    variant: Variant
    lam: float            # 0 when the variant has no ℓ1 (then `lambda` is not read)
    theta: float          # 0 when the variant does not exchange (then `theta` is not read)
    profile: str
    dataset: str
    modalities: tuple[str, ...]
    seeds: tuple[int, ...]
    model: ModelSpec
    weights: str | None       # prepared ImageNet weights (model.init = imagenet), else None
    train: TrainParams
    eval: EvalParams          # batch size of the per-epoch validation
    optim: OptimParams
    method: MethodParams

    def to_dict(self) -> dict:
        d = asdict(self)
        d["variant"], d["factors"] = self.variant.name, self.variant.factors()
        lam, theta = d.pop("lam"), d.pop("theta")
        if self.variant.uses_lambda:
            d["lambda"] = lam
        if self.variant.uses_theta:
            d["theta"] = theta
        return d


def train_settings(p: Params, variant_name: str) -> TrainSettings:
    v = get_variant(variant_name)
    return TrainSettings(
        variant=v,
        lam=p.read("lambda") if v.uses_lambda else 0.0,
        theta=p.read("theta") if v.uses_theta else 0.0,
        profile=p.read("profile"), dataset=p.profile_section("dataset"),
        modalities=p.read("modalities"), seeds=p.profile_section("seeds"),
        model=(model := p.profile_section("model")), weights=weights_path(model),
        train=p.profile_section("train"), eval=p.profile_section("eval"), optim=p.read("optim"),
        method=p.read("method"))


def generate_settings(p: Params) -> SyntheticParams:
    return p.profile_section("synthetic")


def eval_settings(p: Params) -> tuple[str, EvalParams]:
    return p.profile_section("dataset"), p.profile_section("eval")


def download_settings(p: Params, artefact: str) -> dict:
    """What a download stage reads: the mirror of ITS artefact only, and the network settings."""
    if artefact not in {a.name for a in ARTEFACTS}:
        raise ParamsError(f"unknown artefact {artefact!r}; accepted: "
                          f"{', '.join(a.name for a in ARTEFACTS)}")
    return {"mirror": p.read(f"sources.mirrors.{artefact}"), "retries": p.read("sources.retries"),
            "timeout_s": p.read("sources.timeout_s")}


def prepare_settings(p: Params, dataset: str):
    """Options of one prepare stage (prepare.<dataset>)."""
    if dataset not in PREPARE_SECTIONS:
        raise ParamsError(f"no prepare options for {dataset!r}; accepted: {', '.join(PREPARE_SECTIONS)}")
    return p.read(f"prepare.{dataset}")


def inputs_settings(p: Params, profile: str) -> dict:
    """What a profile trains on: its dataset and, with ImageNet init, the prepared weights."""
    if profile not in p.tree["profiles"]:
        raise ParamsError(f"unknown profile {profile!r}; accepted: {', '.join(p.tree['profiles'])}")
    spec = p.read(f"profiles.{profile}.model")
    return {"dataset": p.read(f"profiles.{profile}.dataset"), "weights": weights_path(spec)}


def report_settings(p: Params, notebook: str) -> dict:
    """Papermill parameters of each report notebook (`lambda` is a Python keyword: never pass it)."""
    if notebook == "ablation":
        return {"alpha": p.read("report.alpha")}
    if notebook == "gamma":
        return {"theta": p.read("theta"), "layer": p.read("report.figure5_layer"),
                "seed": p.read("report.figure5_seed")}
    raise ValueError(f"unknown report notebook {notebook!r}; accepted: ablation, gamma")
