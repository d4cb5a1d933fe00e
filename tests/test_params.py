"""params.yaml validation, and: every stage in dvc.yaml declares exactly the params it reads."""
import copy
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from pipeline import config, dvcgen
from pipeline.config import ParamsError, Params, load_params, validate
from pipeline.models.registry import TABLE1, TABLE7, VARIANTS

ROOT = Path(__file__).resolve().parents[1]


def raw_params():
    return YAML(typ="safe", pure=True).load((ROOT / "params.yaml").read_text())


def test_committed_params_are_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.tree["lambda"] == 5e-3 and p.tree["theta"] == 2e-2   # the paper's defaults
    assert {"smoke", "mini", "paper"} <= set(p.tree["profiles"])
    paper = p.tree["profiles"]["paper"]
    # Paper §4.1: NYUDv2, RefineNet-101 from ImageNet, batch 6, lr 5e-4 / 3e-3.
    assert paper["dataset"] == "nyudv2" and paper["model"].layers == (3, 4, 23, 3)
    assert paper["model"].init == "imagenet" and config.weights_path(paper["model"]) == \
        "data/weights/resnet101.pt"
    assert (paper["train"].batch_size, paper["train"].lr_encoder, paper["train"].lr_decoder) == \
        (6, 5e-4, 3e-3)


def _set(d, dotted, value):
    *path, last = dotted.split(".")
    for k in path:
        d = d[k]
    if value is KeyError:
        del d[last]
    else:
        d[last] = value


@pytest.mark.parametrize("key,value,words", [
    ("lambda", -0.1, ["lambda", "-0.1", ">= 0"]),
    ("lambda", "5e-3x", ["lambda", "'5e-3x'", "number"]),
    ("theta", 1.0, ["theta", "1.0", "[0, 1)"]),
    ("theta", -0.01, ["theta", "[0, 1)"]),
    ("profile", "huge", ["profile", "'huge'", "smoke", "mini"]),
    ("profiles.mini.dataset", "kitti", ["profiles.mini.dataset", "'kitti'", "synthetic", "nyudv2"]),
    ("profiles.mini.model.init", "imagenet", ["profiles.mini.model.init", "ResNet-101", "width 64"]),
    ("profiles.paper.model.init", "random", ["init", "scratch or imagenet"]),
    ("sources.mirrors.nyudv2_labeled", "ftp://x/y.mat", ["sources.mirrors.nyudv2_labeled",
                                                         "ftp://x/y.mat", "file://"]),
    ("sources.retries", -1, ["sources.retries", ">= 0"]),
    ("prepare.nyudv2.crop", [6, 474, 7, 700], ["prepare.nyudv2.crop", "640"]),
    ("prepare.nyudv2.depth", "filled", ["prepare.nyudv2.depth", "inpainted or raw"]),
    ("prepare.sunrgbd.depth", "bfx", ["prepare.sunrgbd.depth", "refined or raw"]),
    ("prepare.taskonomy.domains", ["rgb", "mist"], ["prepare.taskonomy.domains", "edge_texture"]),
    ("modalities", ["rgb", "lidar"], ["modalities", "lidar", "depth"]),
    ("modalities", ["rgb"], ["modalities", "2 to 4"]),
    ("modalities", ["rgb", "rgb"], ["modalities", "distinct"]),
    ("optim.momentum", 1.5, ["optim.momentum", "1.5"]),
    ("profiles.mini.train.epochs", 2.5, ["profiles.mini.train.epochs", "integer"]),
    ("profiles.mini.train.epochs", True, ["profiles.mini.train.epochs", "integer"]),
    ("profiles.mini.train.flip", "yes", ["flip", "true or false"]),
    ("profiles.mini.model.layers", [1, 1, 1], ["profiles.mini.model.layers", "4 integers"]),
    ("profiles.smoke.seeds", [0, 0], ["profiles.smoke.seeds", "distinct"]),
    ("profiles.mini.train.scale_max", 0.5, ["scale_max", "scale_min"]),
    ("profiles.mini.synthetic.val_fraction", 1.0, ["val_fraction", "(0, 1)"]),
    ("report.alpha", 0.0, ["report.alpha"]),
    ("method.detach_ensemble", 1, ["detach_ensemble", "true or false"]),
])
def test_bad_values_fail_with_one_line_naming_key_value_and_accepted(key, value, words):
    raw = raw_params()
    _set(raw, key, value)
    with pytest.raises(ParamsError) as e:
        validate(raw)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)
    assert "accepted" in msg


@pytest.mark.parametrize("key,words", [
    ("lamda", ["unknown key lamda", "lambda"]),
    ("profiles.mini.train.epoch", ["unknown key profiles.mini.train.epoch", "epochs"]),
    ("sources.mirrors.nyu", ["unknown key sources.mirrors.nyu", "nyudv2_labeled"]),
    ("prepare.kitti", ["unknown key prepare.kitti", "nyudv2"]),
])
def test_unknown_keys_are_refused(key, words):
    raw = raw_params()
    _set(raw, key, 1)
    with pytest.raises(ParamsError) as e:
        validate(raw)
    for w in words:
        assert w in str(e.value)


def test_missing_key_is_refused():
    raw = raw_params()
    _set(raw, "profiles.smoke.eval", KeyError)
    with pytest.raises(ParamsError, match="missing key profiles.smoke.eval"):
        validate(raw)


def test_unknown_variant_is_refused_before_any_work():
    p = load_params(ROOT / "params.yaml")
    with pytest.raises(ValueError, match="unknown variant 'cen2'; accepted: unshared, shared_bn"):
        config.train_settings(p, "cen2")


def test_registry_has_the_eleven_rows_of_table7_and_table1_subset():
    assert len(TABLE7) == 11 and len({(v.conv, v.bn, v.l1, v.exchange) for v in TABLE7}) == 11
    assert set(TABLE1) <= set(VARIANTS) and len(TABLE1) == 6
    assert VARIANTS["cen"].factors() == {"conv": "shared", "bn": "private", "l1": "half",
                                         "exchange": True}


# --- declared == read -------------------------------------------------------------------------

def declared_params(profile: str) -> dict[str, set[str]]:
    """Params per stage of dvc.yaml and data/dvc.yaml, with ${profile} resolved as DVC does."""
    out = {}
    for f in ("dvc.yaml", "data/dvc.yaml"):
        doc = YAML(typ="safe", pure=True).load((ROOT / f).read_text())
        out.update({name: {k.replace("${profile}", profile) for k in st.get("params", [])}
                    for name, st in doc["stages"].items()})
    return out


def reads_of(stage: str, p: Params) -> set[str]:
    """Run the config function the stage entry point calls and return what it read."""
    p.reads.clear()
    if stage == "generate":
        config.generate_settings(p)
    elif stage.startswith("train_"):
        config.train_settings(p, stage.removeprefix("train_"))
    elif stage.startswith("evaluate_"):
        config.eval_settings(p)
    elif stage.startswith("report_"):
        config.report_settings(p, stage.removeprefix("report_"))
    elif stage.startswith("download_"):
        config.download_settings(p, stage.removeprefix("download_"))
    elif stage.startswith("prepare_"):
        what = stage.removeprefix("prepare_")
        if what in config.PREPARE_SECTIONS:        # weights stages read no params
            config.prepare_settings(p, what)
    elif stage.startswith("inputs_"):
        config.inputs_settings(p, stage.removeprefix("inputs_"))
    else:
        raise AssertionError(f"no reader known for stage {stage}")
    return set(p.reads)


@pytest.mark.parametrize("profile", ["smoke", "mini", "paper"])
def test_every_stage_declares_exactly_what_it_reads(profile):
    p = load_params(ROOT / "params.yaml")
    p.tree = copy.deepcopy(p.tree)
    p.tree["profile"] = profile
    declared = declared_params(profile)
    assert declared, "dvc.yaml has no stages"
    for stage, keys in declared.items():
        assert reads_of(stage, p) == keys, stage


def test_lambda_and_theta_are_read_only_by_the_variants_that_use_them():
    declared = declared_params("mini")
    for v in TABLE7:
        assert ("lambda" in declared[f"train_{v.name}"]) == (v.l1 != "none"), v.name
        assert ("theta" in declared[f"train_{v.name}"]) == v.exchange, v.name


def test_stage_entry_points_take_params_only_through_the_config_functions():
    # The proof above covers what the config functions read; this keeps the stages honest.
    for f in (ROOT / "stages").glob("*.py"):
        text = f.read_text()
        assert ".read(" not in text and "tree[" not in text, f.name
        assert not re.search(r"yaml", text, re.I), f.name


def test_dvc_yaml_is_generated_from_the_registry():
    for rel, text in dvcgen.documents(ROOT / "params.yaml").items():
        assert (ROOT / rel).read_text() == text, f"{rel} is stale: run `python -m pipeline.dvcgen`"


def test_each_profile_trains_on_exactly_its_inputs():
    doc = YAML(typ="safe", pure=True).load((ROOT / "data/dvc.yaml").read_text())
    st = doc["stages"]
    code = ["stages/inputs.py", "pipeline/data/inputs.py"]
    assert st["inputs_mini"]["deps"] == [*code, "data/synthetic/meta.json"]
    assert st["inputs_paper"]["deps"] == [*code, "data/nyudv2/meta.json", "data/weights/resnet101.pt"]
    # Everything a download writes is one artefact's raw file, never cached twice.
    outs = [next(iter(o)) for k, s in st.items() if k.startswith("download_") for o in s["outs"]]
    assert len(outs) == 11 and all(o.startswith("data/raw/") for o in outs)
