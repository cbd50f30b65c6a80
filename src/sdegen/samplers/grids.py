"""Time grids from the start time (T unless ``start`` is given) down to the end time ``eps``."""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from ..sde.base import SDE


def uniform_grid(sde: SDE, steps: int, eps: float, start: float | None = None) -> torch.Tensor:
    """t_i uniform on [eps, T] (Song et al. 2021)."""
    return torch.linspace(sde.T if start is None else start, eps, steps + 1, dtype=torch.float64)


def logsnr_grid(sde: SDE, steps: int, eps: float, start: float | None = None) -> torch.Tensor:
    """λ_i = log(α/σ) uniform between λ(T) and λ(eps) (Lu et al. 2022, DPM-Solver Sec. 3.3)."""
    start = sde.T if start is None else start
    lam = torch.linspace(
        float(sde.log_snr(torch.tensor(start, dtype=torch.float64))),
        float(sde.log_snr(torch.tensor(eps, dtype=torch.float64))),
        steps + 1,
        dtype=torch.float64,
    )
    ts = sde.t_from_log_snr(lam).to(torch.float64)
    ts[0], ts[-1] = start, eps
    return ts


def edm_grid(sde: SDE, steps: int, eps: float, start: float | None = None, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, Eq. 5: the noise-to-signal ratio s = σ/α spaced as s^{1/ρ} uniform."""

    def ratio(t):
        return float(torch.exp(-sde.log_snr(torch.tensor(t, dtype=torch.float64))))

    start = sde.T if start is None else start
    s_max, s_min = ratio(start), ratio(eps)
    i = torch.arange(steps + 1, dtype=torch.float64) / steps
    s = (s_max ** (1 / rho) + i * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    ts = sde.t_from_log_snr(-torch.log(s)).to(torch.float64)
    ts[0], ts[-1] = start, eps
    return ts


def shifted_grid(
    sde: SDE, steps: int, eps: float, start: float | None = None, rho: float = -3.0, shift: float = 0.1
) -> torch.Tensor:
    """EDM's Eq. 5 with a shift and a negative exponent: (s + shift)^{1/ρ} uniform, s = σ/α, ρ = −3.

    Relative steps are smallest at s ≈ shift ~ the data's component scales and grow on both sides
    (big steps where the solution is linear in s, s ≫ 1, and below the sharpest scale).  Chosen for
    EDM's Heun by the log-likelihood gap (docs/samplers.md): 30 / 40 steps leave −0.006 / −0.0025 on the
    tuning mixtures where the log-SNR grid leaves −0.017 / −0.009 (single-Gaussian model:
    scripts/heun_gaussian_bound.py)."""

    def ratio(t):
        return float(torch.exp(-sde.log_snr(torch.tensor(t, dtype=torch.float64))))

    start = sde.T if start is None else start
    a, b = ratio(start) + shift, ratio(eps) + shift
    i = torch.arange(steps + 1, dtype=torch.float64) / steps
    s = (a ** (1 / rho) + i * (b ** (1 / rho) - a ** (1 / rho))) ** rho - shift
    ts = sde.t_from_log_snr(-torch.log(s)).to(torch.float64)
    ts[0], ts[-1] = start, eps
    return ts


#: the data's std assumed when neither the model nor the data say it (EDM's σ_data, Karras et al. 2022)
DEFAULT_DATA_STD = 0.5


def focus_grid(
    sde: SDE,
    steps: int,
    eps: float,
    start: float | None = None,
    center: float | None = None,
    center_std: float = 4.0,
    boost: float = 1.5,
    width: float = 0.5,
    data_std: float = DEFAULT_DATA_STD,
) -> torch.Tensor:
    """The log-SNR grid with extra steps around σ/α = c: step density in λ = −log(σ/α)
    ∝ 1 + boost · exp(−(λ − λ_c)² / 2 width²), λ_c = −log(c).

    Around σ/α ≈ 4 × the data's std (≈ 2 for data spread over [−1, 1]) a sample commits to one mode;
    a multistep solver taking log-SNR steps there extrapolates the denoiser across that change and
    leaves samples between modes (over-dispersion, docs/samplers.md "The focus grid").  The centre
    follows the data's scale: c = ``center_std`` × ``data_std`` (the root-mean-square per-dimension std
    of the data, which the sampler driver passes from the checkpoint or the data; docs/samplers.md
    "The focus grid"), or ``center`` when that is given (an absolute σ/α).
    With boost 1.5 and width 0.5 the 20-NFE default moves about three steps from the low-noise end to
    that band.  ``boost = 0`` is ``logsnr_grid``."""
    if center is None:
        if not (center_std > 0 and data_std > 0):
            raise UserError(
                f"the focus grid needs center_std > 0 and data_std > 0 "
                f"(got center_std={center_std}, data_std={data_std})"
            )
        center = center_std * data_std
    if not (center > 0 and width > 0 and boost >= 0):
        raise UserError(
            f"the focus grid needs center > 0, width > 0 and boost >= 0 "
            f"(got center={center}, width={width}, boost={boost})"
        )
    start = sde.T if start is None else start
    lam_start = float(sde.log_snr(torch.tensor(start, dtype=torch.float64)))
    lam_end = float(sde.log_snr(torch.tensor(eps, dtype=torch.float64)))
    lam_center, scale = -math.log(center), width * math.sqrt(2.0)

    def steps_before(lam):  # ∫ density from lam_start to lam (closed form), increasing in lam
        bump = (
            boost
            * width
            * math.sqrt(math.pi / 2)
            * (torch.erf((lam - lam_center) / scale) - math.erf((lam_start - lam_center) / scale))
        )
        return (lam - lam_start) + bump

    total = steps_before(torch.tensor(lam_end, dtype=torch.float64))
    targets = torch.arange(steps + 1, dtype=torch.float64) / steps * total
    lo = torch.full_like(targets, lam_start)
    hi = torch.full_like(targets, lam_end)
    for _ in range(100):  # bisection: steps_before is monotone
        mid = (lo + hi) / 2
        below = steps_before(mid) < targets
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    ts = sde.t_from_log_snr((lo + hi) / 2).to(torch.float64)
    ts[0], ts[-1] = start, eps
    return ts


GRIDS = {"uniform": uniform_grid, "logsnr": logsnr_grid, "edm": edm_grid, "shifted": shifted_grid, "focus": focus_grid}


def time_grid(sde: SDE, steps: int, eps: float, kind: str = "uniform", **kwargs) -> torch.Tensor:
    if kind not in GRIDS:
        raise UserError(f"unknown time grid {kind!r}; choose one of {sorted(GRIDS)}")
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    return GRIDS[kind](sde, steps, eps, **kwargs)
