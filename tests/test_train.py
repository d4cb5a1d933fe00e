"""Training loop: resume equivalence, non-finite loss, outputs of a run and of evaluation."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import load_params, train_settings
from pipeline.data.loader import SegmentationSplit
from pipeline.train.loop import NonFiniteLoss, train_run
from pipeline.train.runs import evaluate_variant, train_variant

ROOT = Path(__file__).resolve().parents[1]


def settings(variant="cen", **train_overrides):
    p = load_params(ROOT / "params.yaml")
    p.tree["profile"] = "smoke"
    s = train_settings(p, variant)
    train = dataclasses.replace(s.train, **{"epochs": 3, "batch_size": 4, **train_overrides})
    return dataclasses.replace(s, train=train, seeds=(0,))


@pytest.fixture(scope="module")
def splits(tiny_dataset):
    mods = ("rgb", "depth")
    return SegmentationSplit(tiny_dataset, "train", mods), SegmentationSplit(tiny_dataset, "val", mods)


def outputs(run_dir: Path) -> dict:
    best = torch.load(run_dir / "best.pt", weights_only=True)
    last = torch.load(run_dir / "last.pt", weights_only=True)
    g = np.load(run_dir / "gammas.npz")
    return {"best": best, "last": last, "gammas": {k: g[k] for k in g.files},
            "metrics": json.loads((run_dir / "live" / "metrics.json").read_text()),
            "curve": (run_dir / "live" / "plots" / "metrics" / "val" / "miou" / "ensemble.tsv").read_text()}


def test_killed_run_resumes_to_the_same_result(splits, tmp_path):
    torch.set_num_threads(1)
    s = settings()
    train, val = splits
    train_run(s, 0, train, val, tmp_path / "full", torch.device("cpu"), log=lambda *a: None)
    # The same run killed after epoch 1 (its checkpoint is all that survives), then restarted.
    logs = []
    train_run(s, 0, train, val, tmp_path / "killed", torch.device("cpu"), log=logs.append,
              stop_after_epoch=1)
    assert not (tmp_path / "killed" / "gammas.npz").exists()
    train_run(s, 0, train, val, tmp_path / "killed", torch.device("cpu"), log=logs.append)
    assert any("resuming after epoch 1" in line for line in logs)
    a, b = outputs(tmp_path / "full"), outputs(tmp_path / "killed")
    assert a["metrics"] == b["metrics"] and a["curve"] == b["curve"]
    assert a["best"]["epoch"] == b["best"]["epoch"]
    for k in a["best"]["model"]:
        assert torch.equal(a["best"]["model"][k], b["best"]["model"][k]), k
    for k in a["last"]["model"]:
        assert torch.equal(a["last"]["model"][k], b["last"]["model"][k]), k
    assert a["gammas"].keys() == b["gammas"].keys()
    for k in a["gammas"]:
        assert np.array_equal(a["gammas"][k], b["gammas"][k]), k
    assert len(a["gammas"]["steps"]) > 0 and a["gammas"]["gamma_0"].shape[1] == 2


def test_checkpoint_of_another_configuration_is_not_resumed(splits, tmp_path):
    train, val = splits
    train_run(settings(), 0, train, val, tmp_path, torch.device("cpu"), log=lambda *a: None,
              stop_after_epoch=1)
    logs = []
    train_run(settings(lr_encoder=0.01), 0, train, val, tmp_path, torch.device("cpu"),
              log=logs.append, stop_after_epoch=1)
    assert any("another configuration" in line for line in logs)


def test_non_finite_loss_stops_with_run_and_step(splits, tmp_path):
    train, val = splits
    s = settings(lr_encoder=1e6, lr_decoder=1e6)
    with pytest.raises(NonFiniteLoss, match=r"run cen/seed0: non-finite loss .* at step \d+"):
        train_run(s, 0, train, val, tmp_path, torch.device("cpu"), log=lambda *a: None)


def test_train_and_evaluate_variant_write_the_documented_outputs(tiny_dataset, tmp_path):
    s = dataclasses.replace(settings("shared_l1all_ex", epochs=1), seeds=(0, 1))
    data_dir = tiny_dataset.parent
    (tmp_path / "runs" / s.variant.name / "seed7").mkdir(parents=True)   # stale seed: removed
    train_variant(s, str(data_dir), str(tmp_path / "runs"), torch.device("cpu"))
    run = tmp_path / "runs" / "shared_l1all_ex"
    assert sorted(p.name for p in run.iterdir()) == ["run.json", "seed0", "seed1"]
    cfg = json.loads((run / "seed0" / "config.json").read_text())
    assert cfg["lambda"] == 5e-3 and cfg["theta"] == 2e-2 and cfg["seed"] == 0
    for f in ("best.pt", "last.pt", "gammas.npz", "live/metrics.json"):
        assert (run / "seed0" / f).exists(), f
    g = np.load(run / "seed0" / "gammas.npz")
    assert g["sparse_0"].all() and g["allowed_0"].all()         # all-channel variant
    live = json.loads((run / "seed0" / "live" / "metrics.json").read_text())
    assert live["gamma"]["layer0"]["rgb"]["penalised"] > 0     # γ summaries logged by DVCLive
    assert 0 <= live["train"]["frac_replaced"] <= 1 and "val" in live
    res = evaluate_variant("shared_l1all_ex", "synthetic", s.eval, str(data_dir),
                           str(tmp_path / "runs"), str(tmp_path / "results"), torch.device("cpu"))
    saved = json.loads((tmp_path / "results" / "shared_l1all_ex.json").read_text())
    assert saved == json.loads(json.dumps(res))
    assert set(saved["seeds"]) == {"0", "1"}
    for split in ("val", "test"):
        m = saved["seeds"]["0"][split]
        assert set(m) == {"rgb", "depth", "ensemble"}
        assert all(0 <= v <= 1 for o in m.values() for v in o.values())
    # The test split never picks the checkpoint: best_epoch is the validation's choice.
    assert saved["seeds"]["0"]["best_epoch"] == torch.load(run / "seed0" / "best.pt",
                                                           weights_only=True)["epoch"]


def test_evaluate_refuses_runs_of_another_dataset(tiny_dataset, tmp_path):
    run = tmp_path / "runs" / "cen"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"dataset": "nyudv2", "seeds": [0], "modalities": ["rgb", "depth"]}))
    with pytest.raises(ValueError, match="trained on 'nyudv2'"):
        evaluate_variant("cen", "synthetic", settings().eval, str(tiny_dataset.parent),
                         str(tmp_path / "runs"), str(tmp_path / "results"), torch.device("cpu"))


def test_code_change_invalidates_the_checkpoint(monkeypatch):
    from pipeline.train import loop
    cfg = {"variant": "cen", "seed": 0, "device": "cpu"}
    before = loop.fingerprint(cfg)
    assert loop.fingerprint({**cfg, "device": "cuda"}) == before      # resuming elsewhere is fine
    monkeypatch.setattr(loop, "code_hash", lambda: "edited")
    assert loop.fingerprint(cfg) != before
    assert any(p.name == "layers.py" for p in loop.CODE)


def test_imagenet_init_loads_the_prepared_weights_before_training(splits, tmp_path, monkeypatch):
    # The mapping itself is proven against torchvision in test_pretrained.py; here: that a run
    # with `weights` hands exactly that file to it, before the first step, and one without
    # does not (a smoke-sized encoder cannot hold ResNet-101 weights).
    import pipeline.models.pretrained as pretrained
    train, val = splits
    calls = []

    def fake_load(model, state_dict):
        calls.append((model.encoder.conv1.weight.detach().clone(), state_dict))

    monkeypatch.setattr(pretrained, "load_imagenet", fake_load)
    torch.save({"marker": torch.arange(3)}, tmp_path / "w.pt")
    s = dataclasses.replace(settings(), weights=str(tmp_path / "w.pt"))
    cfg = train_run(s, 0, train, val, tmp_path / "a", torch.device("cpu"), log=lambda *a: None,
                    stop_after_epoch=1)
    assert len(calls) == 1 and torch.equal(calls[0][1]["marker"], torch.arange(3))
    assert cfg["weights"] == str(tmp_path / "w.pt")
    train_run(settings(), 0, train, val, tmp_path / "b", torch.device("cpu"), log=lambda *a: None,
              stop_after_epoch=1)
    assert len(calls) == 1


def test_freeze_bn_stats_keeps_running_statistics_and_trains_gamma(splits, tmp_path):
    train, val = splits
    import pipeline.train.loop as loop
    seen = {}
    real = loop.make_model

    def spy(cfg, k):                      # keep a handle on the model train_run builds
        seen["model"] = real(cfg, k)
        return seen["model"]

    for freeze in (True, False):
        loop.make_model = spy
        try:
            torch.manual_seed(0)
            train_run(settings(freeze_bn_stats=freeze), 0, train, val, tmp_path / str(freeze),
                      torch.device("cpu"), log=lambda *a: None, stop_after_epoch=1)
        finally:
            loop.make_model = real
        bn = seen["model"].encoder.bn1
        fresh = torch.nn.BatchNorm2d(bn.num_features)
        assert torch.equal(bn.running_mean, fresh.running_mean) == freeze
        assert not torch.equal(bn.weight.detach(), fresh.weight)        # γ trains either way
