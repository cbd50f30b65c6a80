"""Variance-preserving SDE (Song et al. 2021, Eq. 11): dx = −½ β(t) x dt + √β(t) dw.

α(t) = exp(−B(t)/2), σ(t)² = 1 − exp(−B(t)), with B(t) = ∫_0^t β.
"""

import torch

from .base import SDE


class VPSDE(SDE):
    schedule_kind = "beta"
    name = "vp"

    def log_alpha(self, t):
        return -0.5 * self.schedule.integral(t)

    def marginal_std(self, t):
        return torch.sqrt(-torch.expm1(-self.schedule.integral(t)))

    def drift_coef(self, t):
        return -0.5 * self.schedule.beta(t)

    def diffusion(self, t):
        return torch.sqrt(self.schedule.beta(t))

    def t_from_log_snr(self, lam):
        # σ²/α² = e^B − 1 = e^{−2λ}  ⇒  B = log(1 + e^{−2λ})
        return self.schedule.integral_inverse(torch.nn.functional.softplus(-2 * torch.as_tensor(lam)))
