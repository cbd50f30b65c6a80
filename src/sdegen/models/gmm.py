"""The exact test bed: a Gaussian mixture with diagonal covariances.

Under any of our linear SDEs the perturbed density is again a mixture,
    p_t(x) = Σ_k w_k N(x; α(t) μ_k, diag(α(t)² s_k² + σ(t)²)),
so its score, its class posterior p_t(y = k | x), its log-density and the conditional of
missing coordinates given observed ones are all closed forms.  ``GMMScore`` wraps the score
with the call signature of a trained network, so every sampler, likelihood, guidance and
inpainting path runs on it unchanged and can be checked against exact answers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..sde.base import SDE

LOG_2PI = math.log(2 * math.pi)


class GaussianMixture:
    """K diagonal Gaussians in D = prod(shape) dimensions, samples shaped (N, *shape)."""

    def __init__(self, means, stds, weights, shape):
        self.means = torch.as_tensor(np.asarray(means), dtype=torch.float64)
        self.stds = torch.as_tensor(np.asarray(stds), dtype=torch.float64)
        self.weights = torch.as_tensor(np.asarray(weights), dtype=torch.float64)
        self.shape = tuple(int(s) for s in shape)
        K, D = self.means.shape
        if self.stds.shape == (K,):
            self.stds = self.stds[:, None].expand(K, D).clone()
        if self.stds.shape != (K, D) or self.weights.shape != (K,):
            raise UserError(
                f"means {tuple(self.means.shape)}, stds {tuple(self.stds.shape)} and weights "
                f"{tuple(self.weights.shape)} do not describe K={K} components in D={D}"
            )
        if math.prod(self.shape) != D:
            raise UserError(f"shape {self.shape} has {math.prod(self.shape)} entries, means have D={D}")
        if not all(torch.isfinite(a).all() for a in (self.means, self.stds, self.weights)):
            raise UserError("the mixture's means, stds and weights must be finite numbers (found NaN/inf)")
        if (self.stds <= 0).any() or (self.weights < 0).any() or self.weights.sum() <= 0:
            raise UserError("the mixture's stds must be positive and its weights non-negative (not all zero)")
        self.weights = self.weights / self.weights.sum()

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def data_std(self) -> float:
        """The root-mean-square per-dimension std, √(tr Cov / D): the data's scale the samplers' focus
        grid follows (``samplers.grids.focus_grid``)."""
        weights = self.weights[:, None]
        mean = (weights * self.means).sum(0)
        variance = (weights * ((self.means - mean) ** 2 + self.stds**2)).sum(0)  # law of total variance
        return float(variance.mean().sqrt())

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def multiscale(cls, num_components=4, shape=(1, 4, 4), std_min=0.03, std_max=0.5, seed=0):
        """A mixture whose per-dimension stds span [std_min, std_max] log-uniformly.

        Means are spread in [-1, 1]; weights are unequal (∝ 1, 2, …, K, shuffled) so that
        occupancy tests can tell components apart.
        """
        g = np.random.default_rng(seed)
        D = math.prod(shape)
        means = g.uniform(-1, 1, size=(num_components, D))
        stds = np.exp(g.uniform(math.log(std_min), math.log(std_max), size=(num_components, D)))
        weights = g.permutation(np.arange(1, num_components + 1, dtype=np.float64))
        return cls(means, stds, weights, shape)

    @classmethod
    def from_npz(cls, path):
        path = Path(str(path)).expanduser()
        if not path.is_file():
            raise UserError(f"data.params_file={path} does not exist")
        try:
            with np.load(path) as f:
                arrays = {k: f[k] for k in f.files}
        except Exception as err:  # noqa: BLE001 - corrupt or foreign files
            raise UserError(f"data.params_file={path} is not a readable .npz file ({type(err).__name__})") from None
        missing = {"means", "stds", "weights", "shape"} - set(arrays)
        if missing:
            raise UserError(f"{path}: missing arrays {sorted(missing)} (need means, stds, weights, shape)")
        return cls(arrays["means"], arrays["stds"], arrays["weights"], tuple(arrays["shape"]))

    def save_npz(self, path):
        np.savez(
            path,
            means=self.means.numpy(),
            stds=self.stds.numpy(),
            weights=self.weights.numpy(),
            shape=np.asarray(self.shape),
        )

    def component(self, k: int) -> GaussianMixture:
        """Component k alone, as a one-component mixture: p(x | y = k), the target of class-k guidance."""
        return GaussianMixture(self.means[k : k + 1], self.stds[k : k + 1], [1.0], self.shape)

    # --- sampling -----------------------------------------------------------------------------
    def sample(self, n: int, *, generator=None, component=None):
        """Draw n samples; returns (x of shape (n, *shape) float32, labels (n,) int64)."""
        if component is None:
            y = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        else:
            y = torch.full((n,), int(component), dtype=torch.long)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[y] + self.stds[y] * noise
        return x.reshape(n, *self.shape).float(), y

    # --- perturbed densities --------------------------------------------------------------------
    def _perturbed(self, x, t, sde):
        """(x flat (N, D), means (K, D) or (N, K, D), variances (N, K, D)) of p_t."""
        x = x.reshape(x.shape[0], -1).to(torch.float64)
        means, var = self.means.to(x.device), self.stds.to(x.device) ** 2
        if sde is None or t is None:
            return x, means[None], var[None].expand(x.shape[0], -1, -1)
        t = torch.as_tensor(t, dtype=torch.float64, device=x.device).reshape(-1)
        t = t.expand(x.shape[0]) if t.numel() == 1 else t
        alpha = sde.alpha(t)[:, None, None]
        std = sde.marginal_std(t)[:, None, None]
        return x, alpha * means[None], alpha**2 * var[None] + std**2

    def component_log_probs(self, x, t=None, sde: SDE | None = None):
        """log w_k + log N(x; α μ_k, α² s_k² + σ²), shape (N, K)."""
        xf, means, var = self._perturbed(x, t, sde)
        diff = xf[:, None, :] - means
        log_normal = -0.5 * (diff**2 / var + torch.log(var) + LOG_2PI).sum(-1)
        return torch.log(self.weights.to(xf.device))[None] + log_normal

    def log_prob(self, x, t=None, sde: SDE | None = None):
        """log p_t(x) per sample (t=None: the data density p_0)."""
        return torch.logsumexp(self.component_log_probs(x, t, sde), dim=1)

    def class_log_posterior(self, x, t=None, sde: SDE | None = None):
        """log p_t(y = k | x), shape (N, K)."""
        return torch.log_softmax(self.component_log_probs(x, t, sde), dim=1)

    def score(self, x, t, sde: SDE, y=None):
        """∇_x log p_t(x) (or ∇_x log p_t(x | y) when labels y are given), shaped like x."""
        xf, means, var = self._perturbed(x, t, sde)
        comp_scores = -(xf[:, None, :] - means) / var  # (N, K, D)
        if y is None:
            resp = torch.softmax(self.component_log_probs(x, t, sde), dim=1)  # (N, K)
            out = (resp[..., None] * comp_scores).sum(1)
        else:
            y = torch.as_tensor(y, device=xf.device).reshape(-1).expand(xf.shape[0])
            out = comp_scores[torch.arange(xf.shape[0], device=xf.device), y]
        return out.reshape(x.shape).to(x.dtype)

    # --- conditionals for inpainting --------------------------------------------------------------
    def conditional(self, x_observed, mask):
        """The data conditional of the missing coordinates given the observed ones.

        ``mask`` (1 = known) has the shape of one sample or of the batch.  With diagonal
        covariances the conditional is a mixture over the same components, re-weighted by how
        well each explains the observed part: returns (log_weights (N, K), means (K, D),
        stds (K, D)); only the missing coordinates of means/stds are meaningful.
        """
        n = x_observed.shape[0]
        xf = x_observed.reshape(n, -1).to(torch.float64)
        m = torch.as_tensor(mask, dtype=torch.float64).reshape(-1, self.dim).expand(n, -1)
        var = self.stds**2
        diff = xf[:, None, :] - self.means[None]
        log_normal = -0.5 * (m[:, None, :] * (diff**2 / var + torch.log(var) + LOG_2PI)).sum(-1)
        log_w = torch.log_softmax(torch.log(self.weights)[None] + log_normal, dim=1)
        return log_w, self.means, self.stds

    def sample_conditional(self, x_observed, mask, *, generator=None):
        """Exact samples of the missing coordinates (observed ones copied), shaped like x_observed."""
        log_w, means, stds = self.conditional(x_observed, mask)
        k = torch.multinomial(log_w.exp(), 1, generator=generator).squeeze(1)
        n = x_observed.shape[0]
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        draw = (means[k] + stds[k] * noise).reshape(x_observed.shape).to(x_observed.dtype)
        m = torch.as_tensor(mask, dtype=x_observed.dtype).expand_as(x_observed)
        return m * x_observed + (1 - m) * draw


class GMMScore(nn.Module):
    """The exact score of a mixture under an SDE, with a trained network's signature.

    ``forward(x, t, y=None)`` returns ∇_x log p_t(x) (or ∇_x log p_t(x | y)).
    """

    def __init__(self, mixture: GaussianMixture, sde: SDE):
        super().__init__()
        self.mixture = mixture
        self.sde = sde
        self.num_classes = mixture.num_components
        # a dummy parameter so that .to(device)/.parameters() behave like a network's
        self.register_buffer("_device_anchor", torch.zeros(()))

    def forward(self, x, t, y=None):
        return self.mixture.score(x, t, self.sde, y=y)

    def class_log_posterior(self, x, t):
        """Exact log p_t(y | x): the ideal time-dependent classifier."""
        return self.mixture.class_log_posterior(x, t, self.sde).to(x.dtype)


def gmm_score_from_data(sde: SDE, data, **_) -> GMMScore:
    """Builder for ``model=gmm``: the exact score of ``data=gmm``'s mixture under ``sde``."""
    mixture = getattr(data, "mixture", None)
    if mixture is None:
        raise UserError("model=gmm is the exact score of the Gaussian-mixture test bed: use it with data=gmm")
    return GMMScore(mixture, sde)
