"""One Gaussian component, one std per dimension: a sampler's spread error from one deterministic run, and
closed-form models of EDM's Heun (Alg. 1) and its stochastic variant (Alg. 2) on that component.

For a Gaussian component of std s the exact score is linear, so a deterministic sampler is a linear map of
the scaled state x̃ = x/α and multiplies the component's spread by a factor c(s); the per-dimension gap is
−(c² − 1)/2 nats/dim (negative = over-dispersed, positive = over-concentrated), relative to the exact flow
s/√(s² + σ²) from the same start.  ``scripts/gaussian_spread_profile.py`` prints ``spread_gap`` over a
ladder of stds; ``scripts/heun_gaussian_bound.py`` fits grids and Alg. 2 settings with the Heun models.
"""

from __future__ import annotations

import math

import torch

from ..models.gmm import GaussianMixture, GMMScore
from ..samplers import build
from ..sde import standard_sdes


def spread_gap(sampler_cfg: dict, stds: torch.Tensor, sde_name: str = "vp-linear") -> torch.Tensor:
    """Per-std gap (nats/dim) of the sampler on zero-mean Gaussians of std ``stds`` (one per dimension)."""
    stds = torch.as_tensor(stds, dtype=torch.float64)
    dim = len(stds)
    mixture = GaussianMixture(torch.zeros(1, dim, dtype=torch.float64), stds[None], [1.0], (1, 1, dim))
    sde = standard_sdes()[sde_name]
    x_init = torch.ones(1, 1, 1, dim) * sde.prior_std  # the driver rescales it to σ(t_start)
    sampler = build(sampler_cfg)
    with torch.no_grad():
        result = sampler.sample(GMMScore(mixture, sde), sde, (1, 1, 1, dim), x_init=x_init)
    t_start = torch.tensor(sampler.start_time(sde), dtype=torch.float64)
    noise_start = float(torch.exp(-sde.log_snr(t_start)))  # σ/α at the start = the scaled state there
    exact = noise_start * stds / torch.sqrt(stds**2 + noise_start**2)  # x̃ − μ ∝ √(s² + σ²)
    c = result.x.reshape(dim).double() / exact
    return -(c**2 - 1) / 2


def heun_spread_gap(sigmas: torch.Tensor, stds: torch.Tensor, denoise: bool = True) -> torch.Tensor:
    """Gap (nats/dim) of Gaussians of std ``stds`` after Heun on the descending grid ``sigmas``."""

    def slope(sg):  # d log(x̃ − μ)/dσ
        return sg / (stds**2 + sg**2)

    y = torch.ones_like(stds)
    for a, b in zip(sigmas[:-1], sigmas[1:]):
        y_euler = y * (1 + (b - a) * slope(a))  # Alg. 1 line 5
        y = y + (b - a) / 2 * (slope(a) * y + slope(b) * y_euler)  # line 8
    exact = torch.sqrt(stds**2 + sigmas[-1] ** 2) / torch.sqrt(stds**2 + sigmas[0] ** 2)
    c = y / exact  # spread ratio to the exact flow at σ_N
    end = torch.sqrt(stds**2 + sigmas[-1] ** 2) / stds
    c = c / end if denoise else c * end  # Tweedie shrinks by s²/(s² + σ²); stopping leaves the noise
    return -((c**2 - 1) / 2)


def shifted_sigmas(steps, start, end, rho=-3.0, shift=0.1):
    """heun's ``grid: shifted`` in σ = σ_t/α_t: (σ + shift)^{1/ρ} uniform (sdegen.samplers.grids.shifted_grid)."""
    i = torch.arange(steps + 1, dtype=torch.float64) / steps
    a, b = (start + shift) ** (1 / rho), (end + shift) ** (1 / rho)
    return (a + i * (b - a)) ** rho - shift


def heun_churn_gap(sigmas, stds, gamma, s_noise, s_tmin=0.0, s_tmax=math.inf):
    """Gap (nats/dim) of Gaussians of std ``stds`` after EDM's Alg. 2 on ``sigmas`` + Tweedie: the spread's
    variance V (prior N(0, σ_0²)) gets S_noise² (σ̂² − σ_i²) at each churned step and Heun's factor f²."""

    def slope(sg):  # d log(x̃ − μ)/dσ
        return sg / (stds**2 + sg**2)

    var = torch.full_like(stds, float(sigmas[0]) ** 2)
    for a, b in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        if gamma > 0 and s_tmin <= a <= s_tmax:  # Alg. 2 lines 4–6
            a_hat = a * (1 + gamma)
            var = var + s_noise**2 * (a_hat**2 - a**2)
            a = a_hat
        h = b - a
        factor = 1 + h / 2 * (slope(a) + slope(b) * (1 + h * slope(a)))  # Alg. 1 lines 5–8 on x̃ − μ
        var = factor**2 * var
    var = (stds**2 / (stds**2 + float(sigmas[-1]) ** 2)) ** 2 * var  # Tweedie (EDM's last Euler step)
    return -(var / stds**2 - 1) / 2


def fit_churn(steps, stds, gamma=0.2, s_tmin=0.08, s_tmax=2.5, start=80.0):
    """(max |gap|, end, S_noise) minimising max_s |gap(s)| on the shifted grid: coarse-to-fine grid search."""
    best = (math.inf, None, None)
    log_end, noise, width_end, width_noise = math.log(0.006), 0.95, 1.5, 0.08
    for _ in range(6):
        for le in torch.linspace(log_end - width_end, log_end + width_end, 31).tolist():
            sig = shifted_sigmas(steps, start, math.exp(le))
            for sn in torch.linspace(max(noise - width_noise, 0.5), min(noise + width_noise, 1.0), 33).tolist():
                worst = float(heun_churn_gap(sig, stds, gamma, sn, s_tmin, s_tmax).abs().max())
                if worst < best[0]:
                    best = (worst, math.exp(le), sn)
        log_end, noise = math.log(best[1]), best[2]
        width_end, width_noise = width_end / 4, width_noise / 4
    return best


def best_grid(steps, stds, start, end_guess=0.005, denoise=True, restarts=8, iters=3000):
    """Minimise max_s |gap(s)| over σ_1 > … > σ_N (σ_0 = start): log σ_i = log start − Σ softplus(z)."""
    best = (math.inf, None)
    for seed in range(restarts):
        torch.manual_seed(seed)
        h = math.log(start / end_guess) / steps
        z = (torch.randn(steps, dtype=torch.float64) * 0.3 + math.log(math.expm1(h))).requires_grad_()
        opt = torch.optim.Adam([z], lr=0.03)
        for it in range(iters):
            log_sig = math.log(start) - torch.cumsum(torch.nn.functional.softplus(z), 0)
            sigmas = torch.cat([torch.tensor([start], dtype=torch.float64), torch.exp(log_sig)])
            gap = heun_spread_gap(sigmas, stds, denoise)
            sharp = 200.0 if it < iters // 2 else 2000.0
            loss = torch.logsumexp(sharp * gap.abs(), 0) / sharp  # soft max |gap|
            opt.zero_grad()
            loss.backward()
            opt.step()
        worst = float(gap.abs().max())
        if worst < best[0]:
            best = (worst, sigmas.detach())
    return best
