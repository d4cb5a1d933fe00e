"""The CEN core against hand-computed cases: exchange (M = 2, 3), private BN, ℓ1 on γ̂ only,
and the fused layers against the straightforward per-modality loop."""
import pytest
import torch

from pipeline.models import ModelSpec, build_model, get_variant, segmentation_loss
from pipeline.models.layers import Exchange, MultiConv, MultiNorm, NormExchange, subpart_mask
from pipeline.models.reference import as_reference


def stacked(per_modality):
    """[(N, C, H, W)] * M -> (N*M, C, H, W), sample-major as the layers expect."""
    return torch.stack(per_modality, 1).flatten(0, 1)


def unstack(x, m):
    return list(x.view(x.shape[0] // m, m, *x.shape[1:]).unbind(1))


THETA = 0.02


def test_subpart_mask_splits_channels_evenly():
    assert subpart_mask(2, 4).tolist() == [[True, True, False, False], [False, False, True, True]]
    assert subpart_mask(3, 6).sum(1).tolist() == [2, 2, 2]
    assert not (subpart_mask(3, 7).sum(0) != 1).any()   # every channel has exactly one owner


def test_exchange_two_modalities_subpart_by_hand():
    # One pixel, four channels. Modality 0 owns channels 0-1, modality 1 owns 2-3.
    a = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)
    b = torch.tensor([10.0, 20.0, 30.0, 40.0]).view(1, 4, 1, 1)
    gamma = torch.tensor([[0.01, 1.0, 0.01, 1.0],     # rgb: ch0 small (own part), ch2 small (not)
                          [1.0, 0.0, 1.0, -0.015]])   # depth: ch1 small (not own), ch3 |γ| small
    ex = Exchange(2, 4, THETA, subpart_mask(2, 4))
    out0, out1 = unstack(ex(stacked([a, b]), gamma), 2)
    assert out0.flatten().tolist() == [10.0, 2.0, 3.0, 4.0]
    assert out1.flatten().tolist() == [10.0, 20.0, 30.0, 4.0]


def test_exchange_two_modalities_all_channels_by_hand():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)
    b = torch.tensor([10.0, 20.0, 30.0, 40.0]).view(1, 4, 1, 1)
    gamma = torch.tensor([[0.01, 1.0, 0.01, 1.0], [1.0, 0.0, 1.0, 0.5]])
    ex = Exchange(2, 4, THETA, torch.ones(2, 4, dtype=torch.bool))
    out0, out1 = unstack(ex(stacked([a, b]), gamma), 2)
    assert out0.flatten().tolist() == [10.0, 2.0, 30.0, 4.0]
    assert out1.flatten().tolist() == [10.0, 2.0, 30.0, 40.0]


def test_exchange_three_modalities_takes_mean_of_the_others():
    xs = [torch.tensor(v).view(1, 3, 1, 1) for v in
          ([1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [100.0, 200.0, 300.0])]
    gamma = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    sub = Exchange(3, 3, THETA, subpart_mask(3, 3))   # modality i owns channel i
    o = [t.flatten().tolist() for t in unstack(sub(stacked(xs), gamma), 3)]
    assert o == [[55.0, 2.0, 3.0], [10.0, 101.0, 30.0], [100.0, 200.0, 16.5]]
    full = Exchange(3, 3, THETA, torch.ones(3, 3, dtype=torch.bool))
    o = [t.flatten().tolist() for t in unstack(full(stacked(xs), gamma), 3)]
    assert o == [[55.0, 110.0, 165.0], [10.0, 101.0, 30.0], [100.0, 200.0, 16.5]]


@pytest.mark.parametrize("m", [2, 3])
def test_exchange_gradients_reach_the_source_branch_only(m):
    xs = [torch.randn(2, 3, 2, 2, requires_grad=True) for _ in range(m)]
    gamma = torch.ones(m, 3)
    gamma[0, 0] = 0.0                                 # modality 0, channel 0 is replaced
    ex = Exchange(m, 3, THETA, torch.ones(m, 3, dtype=torch.bool))
    weights = torch.arange(1.0, m + 1).view(1, m, 1, 1, 1)   # distinguish the outputs
    out = ex(stacked(xs), gamma).view(2, m, 3, 2, 2)
    (out * weights).sum().backward()
    assert torch.all(xs[0].grad[:, 0] == 0)          # the replaced channel gets no gradient
    assert torch.all(xs[0].grad[:, 1:] == 1)
    for i in range(1, m):                             # others: own weight + share of modality 0's
        assert torch.allclose(xs[i].grad[:, 0], torch.full((2, 2, 2), i + 1 + 1 / (m - 1)))
        assert torch.all(xs[i].grad[:, 1:] == i + 1)


def test_exchange_off_is_identity():
    x = torch.randn(4, 3, 2, 2)
    ex = Exchange(2, 3, THETA, None)
    assert ex(x, torch.zeros(2, 3)) is x


def test_replaced_channel_passes_gradient_into_the_other_bn():
    ne = NormExchange(2, 2, True, THETA, None, subpart_mask(2, 2))
    with torch.no_grad():
        ne.bn.weight.copy_(torch.tensor([0.0, 1.0, 1.0, 1.0]))   # rgb channel 0 below θ
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, 3, 3, generator=gen)
    # A plain sum would be useless here: d(sum BN(x))/dγ = sum(x̂) = 0 up to rounding, so the
    # gradient's sign would be noise. A fixed random weighting makes it a real number.
    w = torch.randn(4, 3, 3, generator=gen)
    (ne(x)[0::2, 0] * w).sum().backward()            # only rgb's channel 0 output is used
    g = ne.bn.weight.grad
    assert g[0] == 0                                 # the replaced rgb channel sends nothing back
    assert g[2].abs() > 1e-2                         # depth's γ at channel 0 got the gradient
    assert g[1] == 0 and g[3] == 0                   # untouched channels: no gradient at all


def test_private_bn_keeps_statistics_apart():
    torch.manual_seed(0)
    rgb = torch.randn(16, 3, 4, 4) * 2 + 5
    depth = torch.randn(16, 3, 4, 4) * 0.5 - 3
    x = stacked([rgb, depth])
    bn = MultiNorm(2, 3, private=True)
    out0, out1 = unstack(bn(x), 2)
    for o in (out0, out1):                           # each modality normalised on its own
        assert o.mean((0, 2, 3)).abs().max() < 1e-5
        assert (o.var((0, 2, 3), unbiased=False) - 1).abs().max() < 1e-3
    rm = bn.running_mean.view(2, 3)
    assert torch.allclose(rm[0], 0.1 * rgb.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(rm[1], 0.1 * depth.mean((0, 2, 3)), atol=1e-5)
    shared = MultiNorm(2, 3, private=False)
    shared(x)
    assert torch.allclose(shared.running_mean, 0.1 * x.mean((0, 2, 3)), atol=1e-5)


def test_multiconv_shared_and_unshared_match_per_modality_convs():
    torch.manual_seed(0)
    xs = [torch.randn(2, 3, 5, 5) for _ in range(3)]
    shared = MultiConv(3, 3, 4, 3, padding=1, shared=True)
    outs = unstack(shared(stacked(xs)), 3)
    for x, o in zip(xs, outs):
        assert torch.allclose(o, torch.nn.functional.conv2d(x, shared.weight, padding=1), atol=1e-5)
    un = MultiConv(3, 3, 4, 3, padding=1, shared=False)
    outs = unstack(un(stacked(xs)), 3)
    for i, (x, o) in enumerate(zip(xs, outs)):
        w = un.weight[i * 4:(i + 1) * 4]
        assert torch.allclose(o, torch.nn.functional.conv2d(x, w, padding=1), atol=1e-5)


SPEC = ModelSpec((1, 1, 1, 1), 4, (8, 8, 8, 8), 0.0, 0.1)


@pytest.mark.parametrize("l1,expected", [("half", "subpart"), ("all", "all"), ("none", "none")])
def test_l1_touches_only_gamma_hat(l1, expected):
    name = {"half": "shared_l1half", "all": "shared_l1all", "none": "shared_conv"}[l1]
    model = build_model(SPEC, get_variant(name), ("rgb", "depth"), 5, THETA)
    model.l1_penalty().backward() if l1 != "none" else None
    assert len(model.points) == 4                     # one per bottleneck: bn2 only
    point_weights = {id(p.bn.weight) for p in model.points}
    for p in model.points:
        c = p.bn.c
        g = p.bn.weight.grad
        if expected == "none":
            assert g is None and float(model.l1_penalty().detach()) == 0.0
            continue
        mask = subpart_mask(2, c).reshape(-1) if expected == "subpart" else torch.ones(2 * c, dtype=torch.bool)
        assert torch.all(g[mask] == torch.sign(p.bn.weight.detach()[mask]))
        assert torch.all(g[~mask] == 0)
    for name_, prm in model.named_parameters():       # nothing else is penalised
        if id(prm) not in point_weights:
            assert prm.grad is None, name_


def test_l1_value_is_the_sum_of_abs_gamma_hat():
    model = build_model(SPEC, get_variant("cen"), ("rgb", "depth"), 5, THETA)
    expected = sum(p.bn.gamma().abs()[subpart_mask(2, p.bn.c)].sum() for p in model.points)
    assert torch.allclose(model.l1_penalty(), expected)


@pytest.mark.parametrize("m", [2, 3])
def test_exchange_matches_loop_reference_bit_for_bit(m):
    torch.manual_seed(m)
    x = torch.randn(4 * m, 8, 3, 3)
    gamma = torch.rand(m, 8) * 0.05                   # about half below θ
    for allowed in (subpart_mask(m, 8), torch.ones(m, 8, dtype=torch.bool)):
        ex = Exchange(m, 8, THETA, allowed)
        ref = as_reference(ex)
        assert type(ref).__name__ == "LoopExchange"
        assert torch.equal(ex(x, gamma), ref(x, gamma))


@pytest.mark.parametrize("variant", ["cen", "unshared_l1all_ex", "shared_bn"])
@pytest.mark.parametrize("mods", [("rgb", "depth"), ("rgb", "depth", "normal")])
def test_fused_network_equals_loop_reference(variant, mods):
    torch.manual_seed(0)
    model = build_model(SPEC, get_variant(variant), mods, 5, THETA)
    with torch.no_grad():
        for p in model.points:                         # put some γ below θ so exchange acts
            p.bn.weight[::3] = 0.01
    ref = as_reference(model)
    x = torch.randn(3, len(mods), 3, 32, 32)
    y = torch.randint(0, 5, (3, 32, 32))
    assert torch.allclose(model(x), ref(x), rtol=1e-4, atol=1e-5)
    # Gradients in float64: BN over a 1x1 map of 3 samples amplifies float32 round-off, and
    # the point is that the two implementations compute the same function.
    model, ref = model.double(), ref.double()
    x = x.double()
    out, out_ref = model(x), ref(x)
    assert torch.allclose(out, out_ref, rtol=1e-9, atol=1e-10)
    loss, _ = segmentation_loss(out, y, 255)
    loss_ref, _ = segmentation_loss(out_ref, y, 255)
    (loss + model.l1_penalty()).backward()
    (loss_ref + ref.l1_penalty()).backward()
    for (n, a), b in zip(model.named_parameters(), ref.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-7, atol=1e-10), n
    for a, b in zip(model.buffers(), ref.buffers()):   # running statistics too
        assert torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-6)


class _RecordOps(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


# Ops that make the host wait for the device: .item()/bool() and data-dependent shapes.
SYNCING = {"aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.index"}


def test_fused_exchange_step_never_synchronises_with_the_host():
    torch.manual_seed(0)
    model = build_model(SPEC, get_variant("cen"), ("rgb", "depth"), 5, THETA)
    with torch.no_grad():
        for p in model.points:
            p.bn.weight[::3] = 0.01
    x, y = torch.randn(2, 2, 3, 32, 32), torch.randint(0, 5, (2, 32, 32))
    for net, expect_sync in ((model, False), (as_reference(model), True)):
        rec = _RecordOps()
        with rec:
            loss, _ = segmentation_loss(net(x), y, 255)
            (loss + net.l1_penalty()).backward()
        assert bool(rec.ops & SYNCING) == expect_sync, rec.ops & SYNCING
