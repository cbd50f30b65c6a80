"""Time grids from the start time (T unless ``start`` is given) down to the end time ``eps``."""

from __future__ import annotations

import torch

from ..sde.base import SDE


def uniform_grid(sde: SDE, steps: int, eps: float, start: float | None = None) -> torch.Tensor:
    """t_i uniform on [eps, T] (Song et al. 2021)."""
    return torch.linspace(sde.T if start is None else start, eps, steps + 1, dtype=torch.float64)


def logsnr_grid(sde: SDE, steps: int, eps: float, start: float | None = None) -> torch.Tensor:
    """λ_i = log(α/σ) uniform between λ(T) and λ(eps) (Lu et al. 2022, DPM-Solver Sec. 3.3)."""
    start = sde.T if start is None else start
    lam = torch.linspace(float(sde.log_snr(torch.tensor(start, dtype=torch.float64))),
                         float(sde.log_snr(torch.tensor(eps, dtype=torch.float64))), steps + 1, dtype=torch.float64)
    ts = sde.t_from_log_snr(lam).to(torch.float64)
    ts[0], ts[-1] = start, eps
    return ts


def edm_grid(sde: SDE, steps: int, eps: float, start: float | None = None, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, Eq. 5: the noise-to-signal ratio s = σ/α spaced as s^{1/ρ} uniform."""
    ratio = lambda t: float(torch.exp(-sde.log_snr(torch.tensor(t, dtype=torch.float64))))  # noqa: E731
    start = sde.T if start is None else start
    s_max, s_min = ratio(start), ratio(eps)
    i = torch.arange(steps + 1, dtype=torch.float64) / steps
    s = (s_max ** (1 / rho) + i * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    ts = sde.t_from_log_snr(-torch.log(s)).to(torch.float64)
    ts[0], ts[-1] = start, eps
    return ts


def shifted_grid(sde: SDE, steps: int, eps: float, start: float | None = None, rho: float = -3.0,
                 shift: float = 0.1) -> torch.Tensor:
    """EDM's Eq. 5 with a shift and a negative exponent: (s + shift)^{1/ρ} uniform, s = σ/α, ρ = −3.

    Relative steps are smallest at s ≈ shift ~ the data's component scales and grow on both sides
    (big steps where the solution is linear in s, s ≫ 1, and below the sharpest scale).  Chosen for
    EDM's Heun by the log-likelihood gap (docs/samplers.md): 30 / 40 steps leave −0.006 / −0.0025 on the
    tuning mixtures where the log-SNR grid leaves −0.017 / −0.009 (single-Gaussian model: scripts/heun_gaussian_bound.py)."""
    ratio = lambda t: float(torch.exp(-sde.log_snr(torch.tensor(t, dtype=torch.float64))))  # noqa: E731
    start = sde.T if start is None else start
    a, b = ratio(start) + shift, ratio(eps) + shift
    i = torch.arange(steps + 1, dtype=torch.float64) / steps
    s = (a ** (1 / rho) + i * (b ** (1 / rho) - a ** (1 / rho))) ** rho - shift
    ts = sde.t_from_log_snr(-torch.log(s)).to(torch.float64)
    ts[0], ts[-1] = start, eps
    return ts


GRIDS = {"uniform": uniform_grid, "logsnr": logsnr_grid, "edm": edm_grid, "shifted": shifted_grid}


def time_grid(sde: SDE, steps: int, eps: float, kind: str = "uniform", **kwargs) -> torch.Tensor:
    if kind not in GRIDS:
        raise ValueError(f"unknown time grid {kind!r}; choose one of {sorted(GRIDS)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return GRIDS[kind](sde, steps, eps, **kwargs)
