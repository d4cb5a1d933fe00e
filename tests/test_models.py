"""Every registry variant builds and trains one step through the one code path."""
import pytest
import torch

from pipeline.models import TABLE7, ModelSpec, build_model, segmentation_loss

SPEC = ModelSpec((1, 1, 1, 1), 4, (8, 8, 8, 8), 0.0, 0.1)


@pytest.mark.parametrize("variant", TABLE7, ids=lambda v: v.name)
def test_variant_builds_and_trains_one_step(variant):
    torch.manual_seed(0)
    model = build_model(SPEC, variant, ("rgb", "depth"), 6, 0.02)
    x = torch.randn(2, 2, 3, 32, 32)
    y = torch.randint(0, 6, (2, 32, 32))
    y[:, :4] = 255
    out = model(x)
    assert out.shape == (2, 3, 6, 32, 32)           # rgb, depth, ensemble
    ce, per_output = segmentation_loss(out, y, 255)
    loss = ce + 5e-3 * model.l1_penalty()
    assert torch.isfinite(loss) and per_output.shape == (3,)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss.backward()
    opt.step()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert changed == len(before)                   # every parameter, α included, trained
    assert (float(model.l1_penalty().detach()) > 0) == (variant.l1 != "none")
    enabled = [p.exchange.enabled for p in model.points]
    assert all(e == variant.exchange for e in enabled)


def test_sharing_convs_halves_the_conv_parameters():
    from pipeline.models import get_variant
    shared = build_model(SPEC, get_variant("cen"), ("rgb", "depth"), 6, 0.02)
    unshared = build_model(SPEC, get_variant("unshared_l1half_ex"), ("rgb", "depth"), 6, 0.02)
    n = lambda m: sum(p.numel() for p in m.parameters())
    bn = sum(p.numel() for name, p in shared.named_parameters() if "bn" in name or "downsample.1" in name)
    assert n(unshared) - bn - 2 == 2 * (n(shared) - bn - 2)   # α has 2 entries


def test_loss_per_output_matches_cross_entropy_with_ignore():
    logits = torch.randn(2, 3, 4, 5, 5)
    y = torch.randint(0, 4, (2, 5, 5))
    y[0, 0] = 255
    total, per = segmentation_loss(logits, y, 255)
    for o in range(3):
        ref = torch.nn.functional.cross_entropy(logits[:, o], y, ignore_index=255)
        assert torch.allclose(per[o], ref, atol=1e-6)
    assert torch.allclose(total, per.sum())


def test_ensemble_is_softmax_alpha_weighted_and_detach_switch():
    from pipeline.models import get_variant
    torch.manual_seed(0)
    model = build_model(SPEC, get_variant("cen"), ("rgb", "depth"), 6, 0.02)
    model.eval()
    with torch.no_grad():
        model.alpha.copy_(torch.tensor([0.3, -0.2]))
    out = model(torch.randn(1, 2, 3, 32, 32))
    w = torch.softmax(torch.tensor([0.3, -0.2]), 0)
    assert torch.allclose(out[:, 2], w[0] * out[:, 0] + w[1] * out[:, 1], atol=1e-5)
    # Paper (Eq. 4): the ensemble loss reaches the network; official code: only α.
    for detach, reaches in ((False, True), (True, False)):
        model.detach_ensemble = detach
        model.zero_grad()
        model(torch.randn(1, 2, 3, 32, 32))[:, 2].sum().backward()
        g = model.decoder.classifier.weight.grad
        assert (g is not None and bool(g.abs().sum() > 0)) == reaches
        assert model.alpha.grad is not None
