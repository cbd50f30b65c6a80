"""EMA of the weights: EDM2's power-function profile against its closed form."""

import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from sdegen.training.callbacks import PowerEMAWeightAveraging, power_ema_multi_avg_fn, sigma_rel_to_gamma


def average_of_sequence(values, gamma):
    model = torch.nn.Linear(1, 1, bias=False)
    ema = AveragedModel(model, multi_avg_fn=power_ema_multi_avg_fn(gamma), use_buffers=True)
    for v in values:
        model.weight.data.fill_(float(v))
        ema.update_parameters(model)
    return ema.module.weight.item()


def test_sigma_rel_to_gamma_matches_edm2():
    for sigma_rel in (0.01, 0.05, 0.10, 0.25):  # inverts σ_rel = √((γ+1)/((γ+2)²(γ+3))) (EDM2, Eq. 3)
        gamma = sigma_rel_to_gamma(sigma_rel)
        assert ((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3))) ** 0.5 == pytest.approx(sigma_rel, rel=1e-9)
    assert sigma_rel_to_gamma(0.05) == pytest.approx(16.97, abs=0.01)  # EDM2 (Karras et al. 2024), Sec. 3.1
    assert sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=0.01)
    with pytest.raises(ValueError, match="sigma_rel"):
        sigma_rel_to_gamma(0.5)


def test_power_ema_weights_follow_t_to_the_gamma():
    values = torch.randn(400, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # γ = 0: the running mean, exactly
    assert average_of_sequence(values, 0.0) == pytest.approx(values.mean().item(), abs=1e-6)
    # general γ: the recursion's weights are (1 − β_τ) Π_{s>τ} β_s with β_t = (1 − 1/t)^(γ+1), and
    # they equal τ^γ-proportional weights up to O(1/τ)
    gamma = sigma_rel_to_gamma(0.1)
    t = torch.arange(1, 401, dtype=torch.float64)
    beta = (1 - 1 / t) ** (gamma + 1)
    tail = torch.cat([torch.flip(torch.cumprod(torch.flip(beta[1:], [0]), 0), [0]), torch.ones(1, dtype=torch.float64)])
    weights = (1 - beta) * tail
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert average_of_sequence(values, gamma) == pytest.approx((weights * values).sum().item(), abs=1e-5)
    power = t**gamma / (t**gamma).sum()
    assert torch.allclose(weights[200:], power[200:], rtol=0.05)
    cb = PowerEMAWeightAveraging(0.1)
    assert cb.sigma_rel == 0.1 and cb.update_every_n_steps == 1


@pytest.mark.parametrize("avg_fn", ["decay", "power"])
def test_host_counted_averaged_model_matches_torch(avg_fn):
    """HostCountedAveragedModel (no device read per update) computes what torch's AveragedModel does,
    counter included, and re-reads the counter after load_state_dict (a resumed run)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from sdegen.training.callbacks import HostCountedAveragedModel, power_ema_multi_avg_fn, sigma_rel_to_gamma

    fn = get_ema_multi_avg_fn(0.9) if avg_fn == "decay" else power_ema_multi_avg_fn(sigma_rel_to_gamma(0.1))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ours = HostCountedAveragedModel(net, multi_avg_fn=fn, use_buffers=True)
    theirs = AveragedModel(net, multi_avg_fn=fn, use_buffers=True)
    for _ in range(7):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net(torch.randn(5, 3))  # moves the BatchNorm buffers
        ours.update_parameters(net)
        theirs.update_parameters(net)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert int(ours.n_averaged) == int(theirs.n_averaged) == 7
    state = theirs.state_dict()
    resumed = HostCountedAveragedModel(net, multi_avg_fn=fn, use_buffers=True)
    resumed.update_parameters(net)  # host count 1 ...
    resumed.load_state_dict(state)  # ... replaced by the checkpoint's 7
    resumed.update_parameters(net)
    theirs.update_parameters(net)
    for a, b in zip(resumed.state_dict().values(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
