"""Bits/dim through the probability-flow ODE, checked against closed-form densities."""

import math

import pytest
import torch

from sdegen.metrics.likelihood import (
    affine_log_scale,
    bits_per_dim,
    bpd_of_batch,
    dequantize,
    divergence_exact,
    divergence_hutchinson,
    log_likelihood,
    make_probes,
    to_uint8,
)
from sdegen.models.gmm import GaussianMixture, GMMScore
from sdegen.sde import VPSDE, LinearSchedule, SubVPSDE, standard_sdes

LN2 = math.log(2)
SDES = standard_sdes()


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture.multiscale(4, (1, 4, 4), 0.03, 0.5, seed=0)  # D = 16


@pytest.mark.parametrize("name", list(SDES))
def test_gmm_bpd_matches_exact_for_every_sde(mixture, name):
    """Mean bits/dim of 100 points within 0.005 of the exact −log p_0(x)/(D ln 2) (exact trace)."""
    sde = SDES[name]
    x, _ = mixture.sample(100, generator=torch.Generator().manual_seed(1))
    x = x.double()
    res = log_likelihood(GMMScore(mixture, sde), sde, x, trace="exact")
    D = x[0].numel()
    bpd = bits_per_dim(res.logp, D)
    exact_p0 = -mixture.log_prob(x) / (D * LN2)
    exact_peps = -mixture.log_prob(x, torch.tensor(sde.eps, dtype=torch.float64), sde) / (D * LN2)
    print(
        f"{name}: bpd {bpd.mean():.5f}  exact p_0 {exact_p0.mean():.5f}  exact p_eps {exact_peps.mean():.5f}  "
        f"NFE {res.nfe}"
    )
    assert abs(float(bpd.mean() - exact_p0.mean())) < 0.005
    assert abs(float(bpd.mean() - exact_peps.mean())) < 0.005
    # the solve computes log p_eps: with eps = 1e-5 it is p_0 to far below the tolerance
    assert abs(float(exact_p0.mean() - exact_peps.mean())) < 1e-3
    assert (bpd - exact_peps).abs().max() < 0.01  # per sample too
    assert 10 < res.nfe < 1000


def test_single_gaussian_closed_form():
    """Data N(μ, diag s²): log p(x) written out by hand, no mixture code involved."""
    D = 8
    g = torch.Generator().manual_seed(0)
    mu, s = (
        torch.randn(1, D, generator=g, dtype=torch.float64),
        torch.rand(1, D, generator=g, dtype=torch.float64) + 0.2,
    )
    mix = GaussianMixture(mu, s, torch.ones(1), (1, 2, 4))
    x = (mu + s * torch.randn(64, D, generator=g, dtype=torch.float64)).reshape(64, 1, 2, 4)
    logp_true = (-0.5 * (((x.reshape(64, D) - mu) / s) ** 2) - torch.log(s) - 0.5 * math.log(2 * math.pi)).sum(1)
    sde = SubVPSDE(LinearSchedule())
    res = log_likelihood(GMMScore(mix, sde), sde, x, trace="exact")
    bpd, bpd_true = bits_per_dim(res.logp, D), -logp_true / (D * LN2)
    assert abs(float(bpd.mean() - bpd_true.mean())) < 0.005
    # per sample, p_T differs from the prior N(0, σ(T)²) by a shift α(T) μ ≈ 0.007 μ: a few 0.01 nats
    assert torch.allclose(res.logp, logp_true, atol=0.1)
    # Gaussian prior: log p_T(z) is the closed-form prior term
    assert torch.allclose(res.prior_logp, sde.prior_logp(res.z))


def test_hutchinson_several_probes(mixture):
    """Hutchinson with fixed probes is unbiased: 16 Rademacher probes on 200 points within 0.02 bpd."""
    sde = VPSDE(LinearSchedule())
    x, _ = mixture.sample(200, generator=torch.Generator().manual_seed(2))
    x = x.double()
    g = torch.Generator().manual_seed(3)
    res = log_likelihood(GMMScore(mixture, sde), sde, x, trace="hutchinson", n_probes=16, generator=g)
    exact = -mixture.log_prob(x) / (16 * LN2)
    assert abs(float(bits_per_dim(res.logp, 16).mean() - exact.mean())) < 0.02


def test_divergence_estimators_on_a_linear_map():
    """f(x) = A x: exact trace = tr A; Hutchinson with Gaussian and Rademacher probes averages to it."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(6, 6, generator=g, dtype=torch.float64)
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    fx = x @ A.T
    assert torch.allclose(divergence_exact(fx, x), torch.full((3,), float(A.trace()), dtype=torch.float64))
    for kind in ("rademacher", "gaussian"):
        v = make_probes(x.shape, 4000, kind, generator=g, dtype=torch.float64)
        est = divergence_hutchinson(fx, x, v)
        assert torch.allclose(est, torch.full_like(est, float(A.trace())), atol=0.3), kind
    r = make_probes((2, 5), 3, "rademacher", generator=g)
    assert set(r.unique().tolist()) == {-1.0, 1.0}
    with pytest.raises(ValueError):
        make_probes((2, 5), 1, "cauchy")


def test_image_bpd_offsets():
    """A uniform density on the model range gives exactly 8 bits/dim for 8-bit data, whichever scaling."""
    D = 12
    for scale in (lambda v: 2 * v - 1, lambda v: v):  # [-1, 1] and [0, 1]
        log_scale = affine_log_scale(scale, (D,))
        width = float(scale(torch.ones(1)) - scale(torch.zeros(1)))
        logp_uniform = torch.full((5,), -D * math.log(width), dtype=torch.float64)
        assert torch.allclose(
            bits_per_dim(logp_uniform, D, log_scale=log_scale, n_bins=256), torch.full((5,), 8.0, dtype=torch.float64)
        )
    # and the offsets of the docstring: +7 for [-1, 1], +8 for [0, 1]
    assert abs(float(bits_per_dim(torch.zeros(1), D, log_scale=D * LN2, n_bins=256)) - 7) < 1e-6
    assert abs(float(bits_per_dim(torch.zeros(1), D, log_scale=0.0, n_bins=256)) - 8) < 1e-6


def test_bpd_of_batch_images_end_to_end():
    """8-bit "images" whose model-space density is a Gaussian: bpd = −log N(y)/(D ln2) + 7."""
    D, n = 16, 32
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)

    class Data:
        shape, is_image = (1, 4, 4), True

        @staticmethod
        def scale(v):
            return 2 * v - 1

    mix = GaussianMixture(torch.zeros(1, D), torch.full((1, D), 0.7), torch.ones(1), (1, 4, 4))
    sde = VPSDE(LinearSchedule())
    bpd, res = bpd_of_batch(
        GMMScore(mix, sde),
        sde,
        imgs,
        data=Data,
        is_image=True,
        generator=torch.Generator().manual_seed(5),
        dtype=torch.float64,
        trace="exact",
    )
    y = 2 * dequantize(imgs.long(), generator=torch.Generator().manual_seed(5), dtype=torch.float64) - 1
    expected = -mix.log_prob(y) / (D * LN2) + 7
    assert torch.allclose(bpd, expected, atol=0.01)
    # floats in [0, 1] (ToTensor) are turned back into the same integers
    assert torch.equal(to_uint8(imgs.float() / 255), imgs.long())
    with pytest.raises(ValueError, match="uint8 or floats in"):
        to_uint8(imgs.float() / 127.5 - 1)


def test_hutchinson_standard_error_per_sample(mixture):
    """The per-sample SE from the spread over probes matches the actual error against the exact-trace
    solve of the 16-d mixture (same ODE: the difference is the probe noise), and both shrink like 1/√K.
    (|err|/SE is roughly Student-t with K−1 dof and the quadratic forms are heavy-tailed, so the
    fraction under 3 is checked at K ≥ 8; measured 0.87–0.91 at K = 8, 0.96–0.97 at K = 32.)"""
    from sdegen.metrics.likelihood import bits_per_dim_se

    sde = VPSDE(LinearSchedule())
    score = GMMScore(mixture, sde)
    x, _ = mixture.sample(100, generator=torch.Generator().manual_seed(4))
    x = x.double()
    exact = log_likelihood(score, sde, x, trace="exact")
    assert torch.equal(exact.logp_se, torch.zeros(100, dtype=torch.float64))
    one = log_likelihood(score, sde, x[:4], trace="hutchinson", n_probes=1, generator=torch.Generator().manual_seed(0))
    assert torch.isnan(one.logp_se).all()  # one probe: no spread to measure
    rms_se, rms_err = {}, {}
    for k in (8, 32):
        res = log_likelihood(score, sde, x, trace="hutchinson", n_probes=k, generator=torch.Generator().manual_seed(k))
        assert res.delta_logp_per_probe.shape == (100, k)
        assert torch.allclose(res.logp, res.prior_logp + res.delta_logp_per_probe.mean(1))
        err = res.logp - exact.logp
        rms_se[k], rms_err[k] = float(res.logp_se.pow(2).mean().sqrt()), float(err.pow(2).mean().sqrt())
        within = float((err.abs() / res.logp_se < 3).double().mean())
        print(
            f"K={k}: RMS SE {float(bits_per_dim_se(torch.tensor(rms_se[k]), 16)):.4f} bpd, RMS error "
            f"{float(bits_per_dim_se(torch.tensor(rms_err[k]), 16)):.4f} bpd, |err|/SE < 3 for {within:.2f}"
        )
        assert 0.75 < rms_err[k] / rms_se[k] < 1.33  # calibrated
        assert within > (0.85 if k == 8 else 0.93)
    # four times the probes: half the standard error, and half the actual error
    assert 1.5 < rms_se[8] / rms_se[32] < 2.5 and 1.5 < rms_err[8] / rms_err[32] < 2.5
    # the exact-trace solve itself is the exact density to far below the probe noise
    exact_peps = mixture.log_prob(x, torch.tensor(sde.eps, dtype=torch.float64), sde)
    assert float((exact.logp - exact_peps).abs().max()) < 0.2 * rms_se[32]
