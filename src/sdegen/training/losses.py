"""Continuous-time denoising score matching (Song et al. 2021, Eq. 7), as small callables.

    L(θ) = E_t E_{x_0} E_ε [ λ(t) ‖ s_θ(x_t, t) + ε/σ(t) ‖² ],   x_t = α(t) x_0 + σ(t) ε,

with the weightings

    sigma2          λ(t) = σ(t)²,  t ~ U(eps, T)   → ‖σ s_θ + ε‖²   (the default; Song et al. 2021)
    likelihood      λ(t) = g(t)²,  t ~ U(eps, T)   → (g²/σ²) ‖σ s_θ + ε‖²   (Song et al. 2021b, Thm. 1)
    likelihood_is   the likelihood weighting with t drawn from q(t) ∝ g(t)²/σ(t)² instead of uniformly
                    (Song et al. 2021b, Sec. 5): each draw is weighted by (g²/σ²)/((T−eps) q(t)) = Z/(T−eps),
                    Z = ∫ g²/σ² dt, so E_q[loss] equals the ``likelihood`` objective exactly, with less variance.

    edm             λ(t) = σ²·(σ̃² + σ_d²)/σ_d², σ̃ = σ/α, with ln σ̃ ~ N(P_mean, P_std²) (t = the time where
                    σ/α = σ̃, clamped to [eps, T]) → (σ̃² + σ_d²)/σ_d² ‖σ s_θ + ε‖²: Karras et al. (2022), Eq. 2
                    and Table 1 (λ(σ) = (σ² + σ_d²)/(σ σ_d)² on ‖D − x_0‖² = σ̃² ‖σ s + ε‖² in the scaled
                    variables x̃ = x/α, so it holds for VE, VP and sub-VP).  With ``preconditioning: edm``
                    the network's own regression target then has unit weight at every noise level.

For every linear SDE g²/σ² = d/dt log(σ²/α²) = −2 dλ/dt with λ = log(α/σ), so q is "λ uniform on
[λ(T), λ(eps)]": t = t_from_log_snr(λ) and Z = 2 (λ(eps) − λ(T)).

``reduction``: ``mean`` averages ‖·‖² over the data dimensions (O(1) values; the default), ``sum``
sums them (score_sde's ``reduce_mean=False``); the batch is always averaged.
"""

from __future__ import annotations

import torch

from ..sde.base import SDE, expand_as

WEIGHTINGS = ("sigma2", "likelihood", "likelihood_is", "edm")
REDUCTIONS = ("mean", "sum")


def dsm_per_sample(score_fn, sde: SDE, x0, t, noise, y=None, weighting: str = "sigma2", reduction: str = "mean",
                   sigma_data: float = 0.5):
    """Per-sample DSM loss for given times and noise (no t sampling):
    λ(t)/σ(t)² · reduce‖σ(t) s(x_t, t) + ε‖² with λ = σ², g² or σ²(σ̃² + σ_d²)/σ_d² (edm)."""
    sigma = sde.marginal_std(t)
    xt = sde.perturb(x0, t, noise)
    score = score_fn(xt, t) if y is None else score_fn(xt, t, y)
    residual = (expand_as(sigma, x0) * score + noise).flatten(1).pow(2)
    per_sample = residual.mean(1) if reduction == "mean" else residual.sum(1)
    if weighting in ("likelihood", "likelihood_is"):
        per_sample = per_sample * (sde.diffusion(t) ** 2 / sigma**2).to(per_sample.dtype)
    elif weighting == "edm":
        sigma_tilde = sigma / sde.alpha(t)
        per_sample = per_sample * ((sigma_tilde**2 + sigma_data**2) / sigma_data**2).to(per_sample.dtype)
    return per_sample


class DSMLoss:
    """``loss(score_fn, x0, y=None, generator=None) -> (scalar loss, per-sample losses, t)``.

    Args:
        sde: the forward SDE.
        weighting: ``sigma2`` | ``likelihood`` | ``likelihood_is`` | ``edm``.
        reduction: ``mean`` | ``sum`` over data dimensions.
        eps: smallest time (default ``sde.eps``).
        sigma_data, p_mean, p_std: the ``edm`` weighting's data scale and log-normal ln σ̃ ~ N(p_mean, p_std²)
            (Karras et al. 2022: 0.5, −1.2, 1.2); ignored by the other weightings.
    """

    def __init__(self, sde: SDE, weighting: str = "sigma2", reduction: str = "mean", eps: float | None = None,
                 sigma_data: float = 0.5, p_mean: float = -1.2, p_std: float = 1.2):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"loss.weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"loss.reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.sde, self.weighting, self.reduction = sde, weighting, reduction
        self.eps = float(sde.eps if eps is None else eps)
        self.sigma_data, self.p_mean, self.p_std = float(sigma_data), float(p_mean), float(p_std)
        if weighting == "likelihood_is":
            f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
            self.log_snr_min = float(sde.log_snr(f64(sde.T)))
            self.log_snr_max = float(sde.log_snr(f64(self.eps)))
            # Z/(T − eps) with Z = ∫ g²/σ² dt = 2 (λ(eps) − λ(T))
            self.is_weight = 2 * (self.log_snr_max - self.log_snr_min) / (sde.T - self.eps)

    def sample_t(self, n: int, *, device=None, generator=None) -> torch.Tensor:
        u = torch.rand(n, generator=generator, dtype=torch.float64).to(device)
        if self.weighting == "likelihood_is":
            lam = self.log_snr_max + u * (self.log_snr_min - self.log_snr_max)
            t = self.sde.t_from_log_snr(lam).to(torch.float64).clamp(self.eps, self.sde.T)
        elif self.weighting == "edm":  # ln σ̃ = −λ (λ = log(α/σ)) ~ N(p_mean, p_std²), by inverse-CDF of u
            log_sigma_tilde = self.p_mean + self.p_std * torch.special.ndtri(u.clamp(1e-12, 1 - 1e-12))
            t = self.sde.t_from_log_snr(-log_sigma_tilde).to(torch.float64).clamp(self.eps, self.sde.T)
        else:
            t = self.eps + u * (self.sde.T - self.eps)
        return t.float()

    def __call__(self, score_fn, x0, y=None, *, generator=None):
        t = self.sample_t(x0.shape[0], generator=generator).to(device=x0.device, dtype=x0.dtype)
        if generator is None:  # drawn in logical (N, C, H, W) order: the same noise for any memory format
            noise = torch.randn(x0.shape, dtype=x0.dtype, device=x0.device)
        else:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        if not x0.is_contiguous():  # e.g. channels_last=true: x_t keeps the batch's layout
            noise = torch.empty_like(x0).copy_(noise)
        if self.weighting == "likelihood_is":
            # unit weight per draw times Z/(T−eps): ‖σ s + ε‖² · (g²/σ²) / q(t) / (T − eps)
            per_sample = dsm_per_sample(score_fn, self.sde, x0, t, noise, y, "sigma2", self.reduction)
            per_sample = per_sample * self.is_weight
        else:
            per_sample = dsm_per_sample(score_fn, self.sde, x0, t, noise, y, self.weighting, self.reduction,
                                        self.sigma_data)
        return per_sample.mean(), per_sample, t
