"""Variance-exploding SDE (Song et al. 2021, Eq. 9): dx = √(d[σ²(t)]/dt) dw.

With σ(t) = σ_min (σ_max/σ_min)^t, g(t)² = 2 σ(t)² log(σ_max/σ_min).  The forward process starts
at x(0) = x_0 exactly, so the marginal variance is σ(t)² − σ_min² (score_sde uses σ(t)² instead,
which is off by σ_min² — negligible for sampling but not for exact likelihoods near t = 0).
"""

import torch

from .base import SDE


class VESDE(SDE):
    schedule_kind = "sigma"
    name = "ve"

    def log_alpha(self, t):
        return 0.0 * torch.as_tensor(t)  # keeps t's autograd graph (zeros_like would not)

    def marginal_std(self, t):
        sigma = self.schedule.sigma(t)
        return torch.sqrt(torch.clamp(sigma**2 - self.schedule.sigma_min**2, min=0.0))

    def drift_coef(self, t):
        return torch.zeros_like(torch.as_tensor(t))

    def diffusion(self, t):
        return self.schedule.sigma(t) * (2 * self.schedule.log_ratio) ** 0.5

    def t_from_log_snr(self, lam):
        # σ_marginal² = σ(t)² − σ_min² = e^{−2λ}
        lam = torch.as_tensor(lam)
        return self.schedule.sigma_inverse(torch.sqrt(self.schedule.sigma_min**2 + torch.exp(-2 * lam)))
