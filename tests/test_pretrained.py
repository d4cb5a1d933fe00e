"""ImageNet initialisation: a torchvision ResNet-50 file -> prepare_resnet -> load_imagenet gives,
for every modality, exactly torchvision's forward up to layer4."""
import pytest
import torch
import torchvision

from pipeline.models import ModelSpec, build_model, get_variant
from pipeline.models.pretrained import load_imagenet, prepare_resnet

SPEC = ModelSpec((3, 4, 6, 3), 64, (8, 8, 8, 8), 0.5)     # ResNet-50 encoder, tiny decoder


def _random_resnet50() -> torchvision.models.ResNet:
    """torchvision ResNet-50 with fixed random weights and non-trivial BN statistics."""
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.uniform_(0.3, 1.0)         # |γ| > 0: θ = 0 never exchanges
                mod.bias.normal_(0, 0.1)
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
                mod.num_batches_tracked.fill_(7)
                assert c == mod.weight.numel()
    return net.eval()


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    """(torchvision net, path of its raw state dict, path of the prepared file, summary)."""
    root = tmp_path_factory.mktemp("weights")
    net = _random_resnet50()
    src, dst = root / "resnet50-raw.pth", root / "resnet50-prepared.pth"
    torch.save(net.state_dict(), src)
    summary = prepare_resnet(src, dst, depth=50)
    return net, src, dst, summary


def _torchvision_layer4(net, x):
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


def test_prepare_resnet_drops_fc_and_counts(resnet):
    net, _, dst, summary = resnet
    out = torch.load(dst, map_location="cpu", weights_only=True)
    assert not any(k.startswith("fc.") for k in out)
    expected = {k for k in net.state_dict() if not k.startswith("fc.")}
    assert set(out) == expected
    n_params = sum(p.numel() for k, p in net.named_parameters() if not k.startswith("fc."))
    assert summary == {"depth": 50, "tensors": len(expected), "parameters": n_params}
    assert torch.equal(out["layer3.2.bn2.running_var"], net.layer3[2].bn2.running_var)


@pytest.mark.parametrize("variant", ["cen", "unshared_l1half_ex", "shared_bn"])
def test_every_modality_reproduces_torchvision(resnet, variant):
    net, _, dst, _ = resnet
    v = get_variant(variant)
    torch.manual_seed(1)
    model = build_model(SPEC, v, ("rgb", "depth"), 3, theta=0.0)
    with torch.no_grad():                # poison: any tensor load_imagenet misses shows up as NaN
        for t in model.encoder.state_dict().values():
            if t.is_floating_point():
                t.fill_(float("nan"))
    load_imagenet(model, dst)
    enc = model.encoder.eval()
    for t in enc.state_dict().values():
        assert not t.is_floating_point() or not torch.isnan(t).any()
    # The layout really is per-variant: unshared convs stack M copies, private BNs M*C.
    assert enc.layer1[0].conv1.weight.shape[0] == (128 if v.conv == "unshared" else 64)
    assert enc.bn1.weight.numel() == (128 if v.bn == "private" else 64)
    assert int(enc.bn1.num_batches_tracked) == 7
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = _torchvision_layer4(net, x)
        out = enc(torch.cat([x, x]))[3]          # rows: sample 0 rgb, sample 0 depth
    assert ref.shape == (1, 2048, 2, 2) and ref.abs().max() > 0.1
    for m in range(2):
        torch.testing.assert_close(out[m:m + 1], ref, rtol=0, atol=1e-4)
    assert not any(p.exchange.mask(p.bn.gamma()).any() for p in model.points)


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_prepare_resnet_rejects_missing_key_and_wrong_shape(resnet, tmp_path):
    net, src, _, _ = resnet
    sd = torch.load(src, map_location="cpu", weights_only=True)
    missing = dict(sd)
    del missing["layer2.1.conv2.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError) as e:
        prepare_resnet(tmp_path / "missing.pth", tmp_path / "out.pth", depth=50)
    msg = _one_line(e)
    assert "missing key 'layer2.1.conv2.weight'" in msg and "missing.pth" in msg

    bad = dict(sd)
    bad["layer1.0.bn1.weight"] = torch.ones(65)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as e:
        prepare_resnet(tmp_path / "bad.pth", tmp_path / "out.pth", depth=50)
    msg = _one_line(e)
    assert "'layer1.0.bn1.weight' has shape (65,), expected (64,)" in msg
    # the right file checked as the wrong depth: ResNet-101 has more blocks in layer3
    with pytest.raises(ValueError, match="missing key 'layer3.6.conv1.weight'"):
        prepare_resnet(src, tmp_path / "out.pth", depth=101)
    extra = dict(sd, **{"layer5.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="unexpected key 'layer5.weight'"):
        prepare_resnet(tmp_path / "extra.pth", tmp_path / "out.pth", depth=50)
    assert not (tmp_path / "out.pth").exists()      # nothing written on failure
    assert not list(tmp_path.glob(".out.pth.*"))


def test_prepare_resnet_tolerates_missing_num_batches_tracked(resnet, tmp_path):
    _, src, _, _ = resnet
    sd = {k: v for k, v in torch.load(src, weights_only=True).items()
          if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "old.pth")
    prepare_resnet(tmp_path / "old.pth", tmp_path / "out.pth", depth=50)
    out = torch.load(tmp_path / "out.pth", weights_only=True)
    assert int(out["bn1.num_batches_tracked"]) == 0


def test_load_imagenet_rejects_depth_and_width_mismatch(resnet):
    _, _, dst, _ = resnet
    sd = torch.load(dst, map_location="cpu", weights_only=True)
    cen = get_variant("cen")
    shallow = build_model(ModelSpec((3, 4, 5, 3), 64, (8, 8, 8, 8), 0.0), cen, ("rgb", "depth"),
                          3, 0.0)
    before = shallow.encoder.conv1.weight.detach().clone()
    with pytest.raises(ValueError) as e:
        load_imagenet(shallow, sd)
    msg = _one_line(e)
    assert "unexpected key 'layer3.5.conv1.weight'" in msg and "(3, 4, 5, 3)" in msg
    assert torch.equal(shallow.encoder.conv1.weight, before)    # untouched on failure
    deep = build_model(ModelSpec((3, 4, 7, 3), 64, (8, 8, 8, 8), 0.0), cen, ("rgb",), 3, 0.0)
    with pytest.raises(ValueError, match=r"missing key 'layer3.6.conv1.weight' \(expected shape "
                                         r"\(256, 1024, 1, 1\)\)"):
        load_imagenet(deep.encoder, sd)
    narrow = build_model(ModelSpec((3, 4, 6, 3), 32, (8, 8, 8, 8), 0.0), cen, ("rgb", "depth"),
                         3, 0.0)
    with pytest.raises(ValueError, match=r"'conv1.weight' has shape \(64, 3, 7, 7\), expected "
                                         r"\(32, 3, 7, 7\)"):
        load_imagenet(narrow, sd)
