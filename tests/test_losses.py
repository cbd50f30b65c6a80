"""DSM objective: the exact score is its minimiser, with the closed-form irreducible loss."""

import math

import pytest
import torch

from sdegen.models.gmm import GaussianMixture, GMMScore
from sdegen.sde import CosineSchedule, GeometricSigma, LinearSchedule, SubVPSDE, VESDE, VPSDE
from sdegen.training.losses import DSMLoss, dsm_per_sample

SDES = {
    "vp": lambda: VPSDE(LinearSchedule(0.1, 20.0)),
    "subvp": lambda: SubVPSDE(CosineSchedule()),
    "ve": lambda: VESDE(GeometricSigma(0.01, 50.0)),
}


def single_gaussian(mean=0.3, std=0.5, dim=4):
    return GaussianMixture(torch.full((1, dim), mean), torch.full((1, dim), std), torch.ones(1), (1, 2, dim // 2))


@pytest.mark.parametrize("name", list(SDES))
def test_single_gaussian_loss_matches_closed_form(name):
    """Data N(μ, s²) per dim: the optimal σ s*(x_t) + ε = (α²s² ε − σ α (x_0 − μ)) / (α²s² + σ²), so the
    minimal per-dimension loss at time t is α²s²/(α²s² + σ²); averaged over t ~ U(eps, T)."""
    torch.manual_seed(0)
    sde, s = SDES[name](), 0.5
    mixture = single_gaussian(std=s)
    score = GMMScore(mixture, sde)
    n = 200_000
    x0, _ = mixture.sample(n, generator=torch.Generator().manual_seed(1))
    loss, per_sample, t = DSMLoss(sde, "sigma2", "mean")(score, x0.double(), generator=torch.Generator().manual_seed(2))
    ts = torch.linspace(sde.eps, sde.T, 200_001, dtype=torch.float64)
    a2s2 = sde.alpha(ts) ** 2 * s**2
    expected = torch.trapezoid(a2s2 / (a2s2 + sde.marginal_std(ts) ** 2), ts) / (sde.T - sde.eps)
    stderr = per_sample.std() / math.sqrt(n)
    assert abs(loss.item() - expected.item()) < 4 * stderr.item() + 1e-4, (loss.item(), expected.item())
    # per-time check at a fixed t
    t_fix = torch.full((n,), 0.3, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    value = dsm_per_sample(score, sde, x0.double(), t_fix, noise)
    a2s2 = sde.alpha(t_fix[0]) ** 2 * s**2
    assert value.mean().item() == pytest.approx((a2s2 / (a2s2 + sde.marginal_std(t_fix[0]) ** 2)).item(), abs=5e-3)


@pytest.mark.parametrize("name", list(SDES))
def test_exact_score_minimises_dsm_on_mixture(name):
    """On the multiscale mixture: perturbing the exact score raises the loss (common random numbers),
    and its loss equals D − σ² E‖s*(x_t)‖² per dimension (Tweedie: E[ε | x_t] = −σ s*)."""
    sde = SDES[name]()
    mixture = GaussianMixture.multiscale(4, (1, 4, 4), 0.03, 0.5, seed=0)
    score = GMMScore(mixture, sde)
    n = 40_000
    g = torch.Generator().manual_seed(0)
    x0, _ = mixture.sample(n, generator=g)
    x0 = x0.double()
    t = sde.eps + torch.rand(n, generator=g, dtype=torch.float64) * (sde.T - sde.eps)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    exact = dsm_per_sample(score, sde, x0, t, noise)
    direction = torch.randn(x0.shape[1:], generator=g, dtype=torch.float64)
    for delta in (0.05, 0.2):
        def perturbed(x, tt, delta=delta):
            return score(x, tt) + delta * direction / sde.marginal_std(tt).reshape(-1, 1, 1, 1)

        assert dsm_per_sample(perturbed, sde, x0, t, noise).mean() > exact.mean()
        assert dsm_per_sample(lambda x, tt: 1.05 * score(x, tt), sde, x0, t, noise).mean() > exact.mean()
    xt = sde.perturb(x0, t, noise)
    sigma = sde.marginal_std(t).reshape(-1, 1, 1, 1)
    tweedie = 1 - (sigma * score(xt, t)).flatten(1).pow(2).mean(1)
    diff = exact - tweedie
    assert abs(diff.mean().item()) < 4 * diff.std().item() / math.sqrt(n)


@pytest.mark.parametrize("name", list(SDES))
def test_importance_sampling_is_unbiased_for_likelihood_weighting(name):
    """E_q[likelihood_is loss] = E_U[likelihood loss], checked on a function of t we can integrate:
    with the single Gaussian, the per-time loss is (g²/σ²) · α²s²/(α²s² + σ²)."""
    sde, s = SDES[name](), 0.5
    loss_is = DSMLoss(sde, "likelihood_is")
    t = loss_is.sample_t(400_000, generator=torch.Generator().manual_seed(0)).double()
    assert t.min() >= sde.eps - 1e-9 and t.max() <= sde.T + 1e-6

    def per_time(tt):
        a2s2 = sde.alpha(tt) ** 2 * s**2
        return a2s2 / (a2s2 + sde.marginal_std(tt) ** 2)

    is_estimate = (loss_is.is_weight * per_time(t)).mean()
    ts = torch.logspace(math.log10(sde.eps), 0, 400_001, dtype=torch.float64)
    ratio = sde.diffusion(ts) ** 2 / sde.marginal_std(ts) ** 2
    expected = torch.trapezoid(ratio * per_time(ts), ts) / (sde.T - sde.eps)
    assert is_estimate.item() == pytest.approx(expected.item(), rel=0.02)
    # the normaliser Z = ∫ g²/σ² dt = 2 (λ(eps) − λ(T))
    Z = torch.trapezoid(ratio, ts)
    assert loss_is.is_weight * (sde.T - sde.eps) == pytest.approx(Z.item(), rel=2e-3)


def test_importance_sampling_reduces_variance_and_weightings_agree():
    sde = VPSDE(LinearSchedule(0.1, 20.0))
    mixture = single_gaussian()
    score = GMMScore(mixture, sde)
    x0, _ = mixture.sample(20_000, generator=torch.Generator().manual_seed(0))
    _, plain, _ = DSMLoss(sde, "likelihood")(score, x0.double(), generator=torch.Generator().manual_seed(1))
    _, weighted, _ = DSMLoss(sde, "likelihood_is")(score, x0.double(), generator=torch.Generator().manual_seed(1))
    assert weighted.std() < 0.2 * plain.std()
    summed = DSMLoss(sde, "sigma2", "sum")(score, x0.double(), generator=torch.Generator().manual_seed(2))[0]
    mean = DSMLoss(sde, "sigma2", "mean")(score, x0.double(), generator=torch.Generator().manual_seed(2))[0]
    assert summed.item() == pytest.approx(4 * mean.item(), rel=1e-9)
    with pytest.raises(ValueError, match="weighting"):
        DSMLoss(sde, "nope")


@pytest.mark.parametrize("name", list(SDES))
def test_edm_weighting_closed_form_and_noise_distribution(name):
    """weighting=edm: ln(σ/α) of the drawn times is N(p_mean, p_std²) (clamped to the SDE's range), the
    per-time loss of the exact score of N(μ, s²) data is (σ̃² + σ_d²)/σ_d² · α²s²/(α²s² + σ²), and the
    exact score minimises it on the multiscale mixture."""
    sde, s, sd = SDES[name](), 0.5, 0.5
    loss = DSMLoss(sde, "edm", sigma_data=sd, p_mean=-1.2, p_std=1.2)
    t = loss.sample_t(200_000, generator=torch.Generator().manual_seed(0)).double()
    assert t.min() >= sde.eps - 1e-9 and t.max() <= sde.T + 1e-6
    log_sigma_tilde = torch.log(sde.marginal_std(t) / sde.alpha(t))
    lo, hi = (float(torch.log(sde.marginal_std(torch.tensor(v, dtype=torch.float64))
                              / sde.alpha(torch.tensor(v, dtype=torch.float64)))) for v in (sde.eps, sde.T))
    for q in (-2.5, -1.2, 0.0):  # P(ln σ̃ ≤ q) = Φ((q − p_mean)/p_std) inside the range
        if lo < q < hi:
            expected = 0.5 * (1 + math.erf((q + 1.2) / (1.2 * math.sqrt(2))))
            assert (log_sigma_tilde <= q).double().mean().item() == pytest.approx(expected, abs=0.005)

    mixture = single_gaussian(std=s)
    score = GMMScore(mixture, sde)
    n = 100_000
    x0, _ = mixture.sample(n, generator=torch.Generator().manual_seed(1))
    t_fix = torch.full((n,), 0.3, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    value = dsm_per_sample(score, sde, x0.double(), t_fix, noise, weighting="edm", sigma_data=sd)
    a2s2, sigma = sde.alpha(t_fix[0]) ** 2 * s**2, sde.marginal_std(t_fix[0])
    weight = ((sigma / sde.alpha(t_fix[0])) ** 2 + sd**2) / sd**2
    assert value.mean().item() == pytest.approx((weight * a2s2 / (a2s2 + sigma**2)).item(), rel=0.01)

    multi = GaussianMixture.multiscale(4, (1, 4, 4), 0.03, 0.5, seed=0)
    exact = GMMScore(multi, sde)
    g = torch.Generator().manual_seed(4)
    x0 = multi.sample(20_000, generator=g)[0].double()
    t, noise = loss.sample_t(20_000, generator=g).double(), torch.randn(x0.shape, generator=g, dtype=torch.float64)
    base = dsm_per_sample(exact, sde, x0, t, noise, weighting="edm").mean()
    for scale in (0.95, 1.05):
        assert dsm_per_sample(lambda x, tt, c=scale: c * exact(x, tt), sde, x0, t, noise, weighting="edm").mean() > base
