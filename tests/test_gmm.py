"""The exact test bed: score = autograd of the log-density, posteriors, conditionals."""

import numpy as np
import pytest
import torch

from sdegen.models.gmm import GaussianMixture, GMMScore
from sdegen.sde import standard_sdes

SDES = standard_sdes()


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture.multiscale(num_components=3, shape=(1, 2, 3), seed=1)


@pytest.mark.parametrize("name", SDES)
@pytest.mark.parametrize("t", [1e-4, 0.05, 0.5, 1.0])
def test_score_is_gradient_of_log_density(mixture, name, t):
    sde = SDES[name]
    x = torch.randn(16, 1, 2, 3, dtype=torch.float64) * float(sde.marginal_std(torch.tensor(t))) + 0.3
    x.requires_grad_(True)
    tt = torch.full((16,), t, dtype=torch.float64)
    grad = torch.autograd.grad(mixture.log_prob(x, tt, sde).sum(), x)[0]
    torch.testing.assert_close(GMMScore(mixture, sde)(x.detach(), tt), grad, rtol=1e-7, atol=1e-9)
    # conditional score of component y is the gradient of that component's log-density
    y = torch.randint(0, 3, (16,))
    comp = mixture.component_log_probs(x, tt, sde)[torch.arange(16), y]
    grad_y = torch.autograd.grad(comp.sum(), x)[0]
    torch.testing.assert_close(mixture.score(x.detach(), tt, sde, y=y), grad_y, rtol=1e-7, atol=1e-9)


def test_log_density_matches_scipy_at_t0_and_t(mixture):
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    x = torch.randn(5, 1, 2, 3, dtype=torch.float64)
    sde = SDES["vp-linear"]
    t = torch.tensor(0.3, dtype=torch.float64)
    a, s = float(sde.alpha(t)), float(sde.marginal_std(t))
    for time, (alpha, std) in ((None, (1.0, 0.0)), (t, (a, s))):
        expected = logsumexp(
            [
                np.log(float(w))
                + multivariate_normal(alpha * m.numpy(), np.diag(alpha**2 * sd.numpy() ** 2 + std**2)).logpdf(
                    x.reshape(5, -1).numpy()
                )
                for w, m, sd in zip(mixture.weights, mixture.means, mixture.stds)
            ],
            axis=0,
        )
        np.testing.assert_allclose(
            mixture.log_prob(x, time, sde if time is not None else None).numpy(), expected, rtol=1e-10
        )


def test_class_posterior_is_bayes_rule(mixture):
    sde = SDES["subvp-cosine"]
    x, y = mixture.sample(2000, generator=torch.Generator().manual_seed(0))
    post = mixture.class_log_posterior(x, torch.tensor(0.01), sde).exp()
    torch.testing.assert_close(post.sum(1), torch.ones(2000, dtype=torch.float64))
    # at small t the components are well separated: the posterior picks the true label
    assert (post.argmax(1) == y).double().mean() > 0.95
    # at T the posterior is close to the prior weights
    post_T = mixture.class_log_posterior(x[:10], torch.tensor(1.0), sde).exp()
    torch.testing.assert_close(post_T, mixture.weights.expand(10, -1), atol=0.02, rtol=0)


def test_samples_have_mixture_moments(mixture):
    x, y = mixture.sample(200000, generator=torch.Generator().manual_seed(0))
    x = x.reshape(len(x), -1).double()
    freq = torch.bincount(y, minlength=3).double() / len(y)
    torch.testing.assert_close(freq, mixture.weights, atol=5e-3, rtol=0)
    mean = (mixture.weights[:, None] * mixture.means).sum(0)
    torch.testing.assert_close(x.mean(0), mean, atol=1e-2, rtol=0)
    # data_std (the samplers' focus grid follows it): the root-mean-square per-dimension std, law of total variance
    assert mixture.data_std == pytest.approx(float(x.var(0).mean().sqrt()), rel=5e-3)
    wide = GaussianMixture(mixture.means * 2, mixture.stds * 2, mixture.weights, mixture.shape)
    assert wide.data_std == pytest.approx(2 * mixture.data_std, rel=1e-12)


def test_conditional_of_missing_coordinates(mixture):
    mask = torch.tensor([1, 1, 1, 0, 0, 0.0]).reshape(1, 2, 3)
    x, _ = mixture.sample(4, generator=torch.Generator().manual_seed(3))
    log_w, means, stds = mixture.conditional(x, mask)
    # Bayes: weights ∝ w_k N(x_obs; μ_k,obs, s_k,obs²)
    xo = x.reshape(4, -1)[:, :3].double()
    dens = torch.stack(
        [
            mixture.weights[k]
            * torch.distributions.Normal(mixture.means[k, :3], mixture.stds[k, :3]).log_prob(xo).sum(1).exp()
            for k in range(3)
        ],
        1,
    )
    torch.testing.assert_close(log_w.exp(), dens / dens.sum(1, keepdim=True))
    draws = mixture.sample_conditional(x, mask, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(draws.reshape(4, -1)[:, :3], x.reshape(4, -1)[:, :3])


def test_npz_roundtrip(tmp_path, mixture):
    mixture.save_npz(tmp_path / "g.npz")
    again = GaussianMixture.from_npz(tmp_path / "g.npz")
    torch.testing.assert_close(again.means, mixture.means)
    assert again.shape == (1, 2, 3)
    np.savez(tmp_path / "bad.npz", means=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="missing arrays"):
        GaussianMixture.from_npz(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="shape"):
        GaussianMixture(np.zeros((2, 4)), np.ones((2, 4)), [1, 1], (1, 3, 3))


def test_component_is_the_class_conditional():
    """mixture.component(k) is p(x | y = k): the diagonal Gaussian of component k alone."""
    m = GaussianMixture.multiscale(num_components=3, shape=(1, 2, 3), seed=4)
    x = torch.randn(50, 1, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for k in range(3):
        expected = torch.distributions.Normal(m.means[k], m.stds[k]).log_prob(x.reshape(50, -1)).sum(1)
        torch.testing.assert_close(m.component(k).log_prob(x.reshape(50, -1)), expected)
        assert m.component(k).num_components == 1 and m.component(k).shape == m.shape
