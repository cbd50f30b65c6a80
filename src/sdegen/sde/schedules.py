"""Noise schedules.

β-schedules (for VP and sub-VP) give β(t) and its integral B(t) = ∫_0^t β(s) ds, from
which every marginal follows: α(t) = exp(-B(t)/2).  σ-schedules (for VE) give σ(t).

All functions take and return tensors; ``t`` may be any shape.
"""

from __future__ import annotations

import math

import torch


class BetaSchedule:
    """A β(t) schedule on [0, T] for the VP and sub-VP SDEs."""

    kind = "beta"

    def beta(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def integral(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """B(t) = ∫_0^t β(s) ds."""
        raise NotImplementedError


class LinearSchedule(BetaSchedule):
    """β(t) = β_min + t (β_max − β_min)  (Ho et al. 2020; Song et al. 2021, Eq. 11)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not 0 <= beta_min <= beta_max:
            raise ValueError(f"need 0 <= beta_min <= beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral(self, t):
        return self.beta_min * t + 0.5 * t**2 * (self.beta_max - self.beta_min)

    def integral_inverse(self, B):
        """Solve B(t) = B for t (closed form: a quadratic)."""
        a = 0.5 * (self.beta_max - self.beta_min)
        if a == 0:
            return B / self.beta_min
        return (-self.beta_min + torch.sqrt(self.beta_min**2 + 4 * a * B)) / (2 * a)

    def __repr__(self):
        return f"LinearSchedule(beta_min={self.beta_min}, beta_max={self.beta_max})"


class CosineSchedule(BetaSchedule):
    """Cosine schedule (Nichol & Dhariwal 2021, Eq. 17) in continuous time, with β clipped.

    ᾱ(t) = f(t)/f(0),  f(t) = cos²(π/2 · (t + s)/(1 + s)), so that
    β(t) = −d log ᾱ/dt = π/(1 + s) · tan(π/2 · (t + s)/(1 + s)), which diverges at t = 1.

    We clip β at ``beta_clip``: β_c(t) = min(β(t), β_clip).  β is increasing, so the clip is
    active on [t*, T] with t* = (1 + s)·(2/π)·atan(β_clip (1 + s)/π) − s, and the marginal is
    the exact integral of the clipped β:
        B(t) = −log ᾱ(t)                        for t ≤ t*
        B(t) = −log ᾱ(t*) + β_clip (t − t*)     for t > t*.
    α, σ, f and g are all computed from this one B, so they stay mutually consistent.
    With the default β_clip = 100, α(1) ≈ 0.0104 (close to the linear VP's 0.0066).
    """

    def __init__(self, s: float = 0.008, beta_clip: float = 100.0):
        if beta_clip <= math.pi / (1 + s) * math.tan(math.pi / 2 * s / (1 + s)):
            raise ValueError("beta_clip is below β(0): nothing of the cosine schedule would remain")
        self.s, self.beta_clip = float(s), float(beta_clip)
        self.t_clip = (1 + s) * (2 / math.pi) * math.atan(beta_clip * (1 + s) / math.pi) - s
        self._log_f0 = 2 * math.log(math.cos(math.pi / 2 * s / (1 + s)))
        self._B_clip = self._neg_log_alpha_bar(torch.tensor(self.t_clip, dtype=torch.float64)).item()

    def _phase(self, t):
        return math.pi / 2 * (t + self.s) / (1 + self.s)

    def _neg_log_alpha_bar(self, t):
        return self._log_f0 - 2 * torch.log(torch.cos(self._phase(t)))

    def beta(self, t):
        t = torch.as_tensor(t)
        raw = math.pi / (1 + self.s) * torch.tan(self._phase(torch.clamp(t, max=self.t_clip)))
        return torch.where(t < self.t_clip, raw, torch.full_like(raw, self.beta_clip))

    def integral(self, t):
        t = torch.as_tensor(t)
        smooth = torch.clamp(self._neg_log_alpha_bar(torch.clamp(t, max=self.t_clip)), min=0.0)
        return torch.where(t < self.t_clip, smooth, self._B_clip + self.beta_clip * (t - self.t_clip))

    def integral_inverse(self, B):
        """Solve B(t) = B for t in closed form on both pieces."""
        B = torch.as_tensor(B)
        # −log ᾱ = B  ⇔  cos(phase) = exp((log f0 − B)/2)
        phase = torch.arccos(torch.clamp(torch.exp((self._log_f0 - B) / 2), max=1.0))
        smooth = phase * 2 / math.pi * (1 + self.s) - self.s
        linear = self.t_clip + (B - self._B_clip) / self.beta_clip
        return torch.where(B < self._B_clip, smooth, linear)

    def __repr__(self):
        return f"CosineSchedule(s={self.s}, beta_clip={self.beta_clip})"


class GeometricSigma:
    """VE noise scale σ(t) = σ_min (σ_max/σ_min)^t  (Song et al. 2021, Eq. 9 / App. C)."""

    kind = "sigma"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.log_ratio = math.log(sigma_max / sigma_min)

    def sigma(self, t):
        return self.sigma_min * torch.exp(t * self.log_ratio)

    def sigma_inverse(self, sigma):
        return torch.log(sigma / self.sigma_min) / self.log_ratio

    def __repr__(self):
        return f"GeometricSigma(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"
