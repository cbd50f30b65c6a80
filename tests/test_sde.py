"""The SDE core against its own definitions: f = d log α/dt, g² = dσ²/dt − 2fσ², forward
simulation against the closed-form marginal, finiteness on [eps, T], λ and its inverse."""

import math

import pytest
import torch

from sdegen.sde import (
    VESDE,
    VPSDE,
    CosineSchedule,
    GeometricSigma,
    LinearSchedule,
    SubVPSDE,
    check_compatible,
    standard_sdes,
)

SDES = standard_sdes()


def grid(sde):
    # includes points near eps and near T, and (for cosine) both sides of the clip point
    return torch.cat(
        [
            torch.tensor([sde.eps, 2e-5, 1e-4, 1e-3]),
            torch.linspace(0.01, 0.99, 50),
            torch.tensor([0.9, 0.9779, 0.978, 0.99, 0.999, sde.T - 1e-4]),
        ]
    ).double()


@pytest.mark.parametrize("name", SDES)
def test_drift_and_diffusion_follow_from_marginal(name):
    sde = SDES[name]
    t = grid(sde).requires_grad_(True)
    log_alpha = sde.log_alpha(t)
    var = sde.marginal_std(t) ** 2
    dlog_alpha = torch.autograd.grad(log_alpha.sum(), t)[0]
    dvar = torch.autograd.grad(var.sum(), t)[0]
    f = sde.drift_coef(t).detach()
    g2 = sde.diffusion(t).detach() ** 2
    torch.testing.assert_close(f, dlog_alpha, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(g2, dvar - 2 * f * var.detach(), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", SDES)
def test_everything_finite_on_eps_T(name):
    sde = SDES[name]
    t = torch.linspace(sde.eps, sde.T, 2001).double()
    for value in (sde.alpha(t), sde.marginal_std(t), sde.drift_coef(t), sde.diffusion(t), sde.log_snr(t)):
        assert torch.isfinite(value).all()
    assert (sde.marginal_std(t) > 0).all()
    assert (sde.diffusion(t) > 0).all()
    # λ strictly decreasing, so its inverse is well defined
    assert (sde.log_snr(t).diff() < 0).all()


@pytest.mark.parametrize("name", SDES)
def test_log_snr_inverse(name):
    sde = SDES[name]
    t = torch.linspace(1e-3, sde.T, 101).double()
    torch.testing.assert_close(sde.t_from_log_snr(sde.log_snr(t)), t, rtol=1e-6, atol=1e-7)
    # the generic bisection of the base class agrees with the closed forms
    generic = type(sde).__mro__[1].t_from_log_snr(sde, sde.log_snr(t))
    torch.testing.assert_close(generic, t, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", SDES)
def test_forward_euler_maruyama_matches_marginal(name):
    sde = SDES[name]
    gen = torch.Generator().manual_seed(0)
    n, steps = 20000, 1000  # Euler–Maruyama's bias at this dt (≈ β dt / 8 of the std) stays inside the 3 % below
    x0 = torch.tensor([1.0, -0.5]).double()
    x = x0.expand(n, 2).clone()
    ts = torch.linspace(0.0, sde.T, steps + 1).double()
    check = {steps // 4: None, steps // 2: None, steps: None}
    for i in range(steps):
        t, dt = ts[i], ts[i + 1] - ts[i]
        x = x + sde.drift(x, t) * dt + sde.diffusion(t) * dt.sqrt() * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        if i + 1 in check:
            t1 = ts[i + 1].reshape(1)
            mean, std = sde.alpha(t1) * x0, sde.marginal_std(t1)
            se_mean = std / math.sqrt(n)
            assert (x.mean(0) - mean).abs().max() < 5 * se_mean + 2e-3 * max(1.0, float(std)), (i, x.mean(0), mean)
            assert (x.std(0) / std - 1).abs().max() < 0.03, (i, x.std(0), std)


def test_cosine_schedule_is_clipped_consistently():
    sched = CosineSchedule(s=0.008, beta_clip=100.0)
    t = torch.linspace(0, 1, 100001).double()
    beta = sched.beta(t)
    assert beta.max() <= 100.0 + 1e-9 and torch.isfinite(beta).all()
    # the marginal is the integral of the clipped β (trapezoid rule)
    cumulative = torch.cat([torch.zeros(1).double(), torch.cumulative_trapezoid(beta, t)])
    torch.testing.assert_close(cumulative, sched.integral(t), rtol=1e-5, atol=1e-6)
    # before the clip, ᾱ(t) is exactly Nichol & Dhariwal's cos² ratio
    t0 = torch.tensor([0.0, 0.3, 0.7, 0.9]).double()
    f = torch.cos((t0 + 0.008) / 1.008 * math.pi / 2) ** 2
    torch.testing.assert_close(torch.exp(-sched.integral(t0)), f / f[0])
    assert 0.005 < VPSDE(sched).alpha(torch.tensor(1.0)).item() < 0.02


def test_linear_vp_closed_form_values():
    sde = VPSDE(LinearSchedule(0.1, 20.0))
    t = torch.tensor(1.0).double()
    B = 0.1 + 0.5 * 19.9
    assert sde.alpha(t).item() == pytest.approx(math.exp(-B / 2))
    assert sde.marginal_std(t).item() == pytest.approx(math.sqrt(1 - math.exp(-B)))
    sub = SubVPSDE(LinearSchedule(0.1, 20.0))
    assert sub.marginal_std(t).item() == pytest.approx(1 - math.exp(-B))
    ve = VESDE(GeometricSigma(0.01, 50.0))
    assert ve.marginal_std(t).item() == pytest.approx(math.sqrt(50.0**2 - 0.01**2))
    assert ve.prior_std == pytest.approx(math.sqrt(50.0**2 - 0.01**2))


def test_prior_logp_is_gaussian_density():
    sde = VPSDE(LinearSchedule())
    z = torch.randn(5, 3, 2, 2).double()
    var = sde.prior_std**2
    expected = torch.distributions.Normal(0, math.sqrt(var)).log_prob(z).flatten(1).sum(1)
    torch.testing.assert_close(sde.prior_logp(z), expected)


def test_incompatible_schedule_rejected():
    with pytest.raises(ValueError, match="sigma"):
        VESDE(CosineSchedule())
    with pytest.raises(ValueError, match="beta"):
        VPSDE(GeometricSigma())
    assert "geometric" in check_compatible(VESDE, CosineSchedule())
    assert check_compatible(VPSDE, CosineSchedule()) is None
