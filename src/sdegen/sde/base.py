"""The SDE interface (Song et al. 2021, Sec. 3).

Every SDE here is linear, dx = f(t) x dt + g(t) dw, so it is defined by its marginal
p_0t(x_t | x_0) = N(α(t) x_0, σ(t)² I):

    f(t) = d log α / dt,        g(t)² = dσ²/dt − 2 f(t) σ(t)².

Subclasses give ``log_alpha``, ``marginal_std``, ``drift_coef`` (f) and ``diffusion`` (g) in
closed form; everything else (reverse-time drift, probability-flow drift, prior, log-SNR
λ = log α/σ and its inverse) is derived here.  ``t`` is a tensor of shape () or (B,);
coefficients broadcast against x of shape (B, ...).

Nothing in this package imports Lightning or Hydra.
"""

from __future__ import annotations

import math

import torch


def expand_as(coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample coefficient (shape () or (B,)) to broadcast against x (B, ...)."""
    coef = torch.as_tensor(coef, dtype=x.dtype, device=x.device)
    if coef.ndim == 0:
        return coef
    return coef.reshape(coef.shape[0], *([1] * (x.ndim - 1)))


class SDE:
    """Base class of the linear SDEs dx = f(t) x dt + g(t) dw on [eps, T]."""

    #: kind of schedule this SDE is built from ("beta" or "sigma")
    schedule_kind: str = ""
    name: str = ""

    def __init__(self, schedule, T: float = 1.0, eps: float = 1e-5):
        if getattr(schedule, "kind", None) != self.schedule_kind:
            raise ValueError(f"{type(self).__name__} needs a {self.schedule_kind!r} schedule, got {schedule!r}")
        if not 0 <= eps < T:
            raise ValueError(f"need 0 <= eps < T, got eps={eps}, T={T}")
        self.schedule = schedule
        self.T = float(T)
        self.eps = float(eps)

    # --- closed forms given by subclasses -------------------------------------------------
    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def marginal_std(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def drift_coef(self, t: torch.Tensor) -> torch.Tensor:
        """f(t), with drift f(x, t) = f(t) x."""
        raise NotImplementedError

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        """g(t)."""
        raise NotImplementedError

    # --- derived ----------------------------------------------------------------------------
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return expand_as(self.drift_coef(t), x) * x

    def marginal(self, x0: torch.Tensor, t: torch.Tensor):
        """Mean α(t) x_0 and std σ(t) of p_0t(x_t | x_0) (std broadcast to x)."""
        return expand_as(self.alpha(t), x0) * x0, expand_as(self.marginal_std(t), x0)

    def perturb(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = α(t) x_0 + σ(t) ε."""
        mean, std = self.marginal(x0, t)
        return mean + std * noise

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """λ(t) = log(α(t)/σ(t)), decreasing in t."""
        return self.log_alpha(t) - torch.log(self.marginal_std(t))

    def t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        """Inverse of λ(t).  Generic bisection on [0, T]; subclasses override with closed forms."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        lo = torch.zeros_like(lam)
        hi = torch.full_like(lam, self.T)
        for _ in range(60):
            mid = (lo + hi) / 2
            above = self.log_snr(mid) > lam  # λ decreasing: root lies to the right
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return (lo + hi) / 2

    def reverse_drift(self, x, t, score):
        """Drift of the reverse-time SDE (Song et al. 2021, Eq. 6): f(x,t) − g(t)² ∇log p_t(x)."""
        return self.drift(x, t) - expand_as(self.diffusion(t) ** 2, x) * score

    def ode_drift(self, x, t, score):
        """Probability-flow ODE (Song et al. 2021, Eq. 13): f(x,t) − ½ g(t)² ∇log p_t(x)."""
        return self.drift(x, t) - 0.5 * expand_as(self.diffusion(t) ** 2, x) * score

    # --- prior at T ---------------------------------------------------------------------------
    @property
    def prior_std(self) -> float:
        """Std of the prior N(0, σ(T)² I): the marginal's own scale at T, for every SDE."""
        return float(self.marginal_std(torch.tensor(self.T, dtype=torch.float64)))

    def prior_sample(self, shape, *, generator=None, device=None, dtype=torch.float32):
        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return self.prior_std * z

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, σ(T)² I), summed over all but the batch dimension."""
        dim = z[0].numel()
        var = self.prior_std**2
        return -0.5 * dim * math.log(2 * math.pi * var) - z.flatten(1).pow(2).sum(1) / (2 * var)

    def __repr__(self):
        return f"{type(self).__name__}({self.schedule!r}, T={self.T}, eps={self.eps})"
