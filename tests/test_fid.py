"""The FID Inception (TF 2015-12-05 graph on torchvision's Inception3 layout) and the distance."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models.inception import Inception3

from pipeline.metrics.fid import (FIDInceptionV3, feature_stats, frechet_distance,
                                  load_fid_inception, prepare_fid_inception)


def _random_inception() -> Inception3:
    """torchvision Inception3 with the FID checkpoint's layout, random weights and BN stats."""
    torch.manual_seed(0)
    net = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    with torch.no_grad():
        for mod in net.modules():
            # variance-preserving convs: with nn.Conv2d's default init the signal dies out and
            # pool3 would hardly depend on the image, so tests of the forward would be blind
            if isinstance(mod, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    net = _random_inception()
    path = tmp_path_factory.mktemp("fid") / "pt_inception-test.pth"
    torch.save(net.state_dict(), path)
    return net, path


@pytest.fixture(scope="module")
def fid_net(weights):
    return load_fid_inception(weights[1])


def test_load_and_features(fid_net):
    x = torch.rand(2, 3, 64, 64)
    f = fid_net(x)
    assert f.shape == (2, 2048) and f.dtype == torch.float32
    assert torch.isfinite(f).all() and (f >= 0).all()      # an average of ReLU outputs
    assert (f[0] - f[1]).abs().max() > 1e-3                 # and it sees the image
    assert not fid_net.train().training and not fid_net.Mixed_5b.branch_pool.bn.training
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fid_net(x * 255)


def test_matches_torchvision_when_the_two_pools_are_put_back(weights, fid_net):
    """With torchvision's pooling restored, our forward (stem, branch order, resize, scaling,
    pool3) must be torchvision's; with the FID pooling it must differ."""
    tv = copy.deepcopy(weights[0])          # the fixture's net is shared: leave it intact
    tv.fc = torch.nn.Identity()             # eval-mode forward then returns pool3 features
    x = torch.rand(1, 3, 75, 90)               # one image: three full forwards follow
    with torch.no_grad():
        ref = tv(2 * F.interpolate(x, size=(299, 299), mode="bilinear") - 1)
        ours = fid_net(x)
        assert (ours - ref).abs().max() > 1e-3
        blocks = [getattr(fid_net, f"Mixed_{b}") for b in
                  ("5b", "5c", "5d", "6b", "6c", "6d", "6e", "7b", "7c")]
        for b in blocks:                    # an instance attribute shadows the class's pool
            b.pool = lambda t: F.avg_pool2d(t, 3, 1, 1)
        try:
            torch.testing.assert_close(fid_net(x), ref, rtol=1e-4, atol=1e-5)
        finally:
            for b in blocks:
                del b.pool


def _manual_pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    """3x3, stride 1, padding 1 pooling written out: 'avg' averages only in-image pixels."""
    n, c, h, w = x.shape
    fill = float("-inf") if kind == "max" else 0.0
    xp = torch.full((n, c, h + 2, w + 2), fill)
    xp[:, :, 1:-1, 1:-1] = x
    inside = torch.zeros(1, 1, h + 2, w + 2)
    inside[:, :, 1:-1, 1:-1] = 1
    windows = [(xp[:, :, i:i + h, j:j + w], inside[:, :, i:i + h, j:j + w])
               for i in range(3) for j in range(3)]
    if kind == "max":
        return torch.stack([v for v, _ in windows]).amax(0)
    return sum(v for v, _ in windows) / sum(k for _, k in windows)


@pytest.mark.parametrize("block,cin,kind", [("Mixed_5b", 192, "avg"), ("Mixed_6b", 768, "avg"),
                                            ("Mixed_7b", 1280, "avg"), ("Mixed_7c", 2048, "max")])
def test_pool_branch_is_the_tf_one(fid_net, block, cin, kind):
    """The pool branch (the block's last channels) pools as TF did, not as torchvision does."""
    mod = getattr(fid_net, block)
    torch.manual_seed(1)
    x = torch.randn(1, cin, 5, 5)
    with torch.no_grad():
        out = mod(x)
        k = mod.branch_pool.conv.out_channels
        torch.testing.assert_close(out[:, -k:], mod.branch_pool(_manual_pool(x, kind)),
                                   rtol=1e-5, atol=1e-5)
        # torchvision's pooling (zeros counted in the border average) gives something else
        tv = mod.branch_pool(F.avg_pool2d(x, 3, 1, 1))
        assert (out[:, -k:] - tv).abs().max() > 1e-2


def _one_line(excinfo) -> str:
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_bad_checkpoints_rejected(weights, tmp_path):
    _, path = weights
    sd = torch.load(path, weights_only=True)
    missing = {k: v for k, v in sd.items() if k != "Mixed_6c.branch7x7_2.conv.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    for fn in (load_fid_inception, lambda p: prepare_fid_inception(p, tmp_path / "out.pth")):
        with pytest.raises(ValueError) as e:
            fn(tmp_path / "missing.pth")
        assert "missing key 'Mixed_6c.branch7x7_2.conv.weight'" in _one_line(e)
    bad = dict(sd, **{"fc.weight": torch.zeros(1000, 2048)})     # torchvision's 1000 classes
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as e:
        load_fid_inception(tmp_path / "bad.pth")
    assert "'fc.weight' has shape (1000, 2048), expected (1008, 2048)" in _one_line(e)
    torch.save({"AuxLogits.fc.weight": torch.zeros(1), **sd}, tmp_path / "aux.pth")
    with pytest.raises(ValueError, match="unexpected key 'AuxLogits.fc.weight'"):
        prepare_fid_inception(tmp_path / "aux.pth", tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()


def test_prepare_writes_a_loadable_copy(weights, tmp_path):
    net, path = weights
    summary = prepare_fid_inception(path, tmp_path / "w" / "fid.pth")
    assert summary["tensors"] == len(net.state_dict())
    assert summary["parameters"] == sum(p.numel() for p in net.parameters())
    out = torch.load(tmp_path / "w" / "fid.pth", weights_only=True)
    assert all(torch.equal(out[k], v) for k, v in net.state_dict().items())


def test_feature_stats():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(50, 4))
    mu, sigma = feature_stats(torch.from_numpy(f).float())
    np.testing.assert_allclose(mu, f.mean(0), atol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(f.T), atol=1e-6)
    with pytest.raises(ValueError):
        feature_stats(np.zeros((1, 4)))


def test_frechet_distance_identical_and_closed_form():
    rng = np.random.default_rng(0)
    mu, sigma = feature_stats(rng.normal(size=(200, 16)))
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6
    # fewer samples than dimensions: singular covariance, still ~0 against itself
    mu_s, sigma_s = feature_stats(rng.normal(size=(5, 16)))
    assert abs(frechet_distance(mu_s, sigma_s, mu_s, sigma_s)) < 1e-3
    # diagonal Gaussians: ||mu1 - mu2||^2 + sum(s1 + s2 - 2 sqrt(s1 s2))
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    s1, s2 = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    closed = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    d = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert closed > 1 and d == pytest.approx(closed, rel=1e-9, abs=1e-9)
    # a full (non-diagonal) case: rotating both covariances by the same orthogonal matrix
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    d_rot = frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2, q @ np.diag(s2) @ q.T)
    assert d_rot == pytest.approx(closed, rel=1e-6)
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(mu1, np.diag(s1), mu2[:4], np.diag(s2[:4]))
