"""Sub-VP SDE (Song et al. 2021, Eq. 17): dx = −½ β(t) x dt + √(β(t)(1 − e^{−2B(t)})) dw.

α(t) = exp(−B(t)/2), σ(t) = 1 − exp(−B(t))  (the variance is the square of the VP one's),
so its variance stays below the VP SDE's at every t.
"""

import torch

from .base import SDE


class SubVPSDE(SDE):
    schedule_kind = "beta"
    name = "subvp"

    def log_alpha(self, t):
        return -0.5 * self.schedule.integral(t)

    def marginal_std(self, t):
        return -torch.expm1(-self.schedule.integral(t))

    def drift_coef(self, t):
        return -0.5 * self.schedule.beta(t)

    def diffusion(self, t):
        B = self.schedule.integral(t)
        return torch.sqrt(self.schedule.beta(t) * -torch.expm1(-2 * B))

    def t_from_log_snr(self, lam):
        # σ/α = e^{B/2} − e^{−B/2} = 2 sinh(B/2) = e^{−λ}  ⇒  B = 2 asinh(e^{−λ}/2)
        B = 2 * torch.asinh(torch.exp(-torch.as_tensor(lam)) / 2)
        return self.schedule.integral_inverse(B)
