"""SDE-DPM-Solver++(2M) (Lu et al. 2022b, arXiv:2211.01095, Sec. 5 and App. A; the variant of
k-diffusion / diffusers ``sde-dpmsolver++``): a stochastic multistep exponential integrator of
the reverse-time SDE in data prediction.  Fast like DPM-Solver++, but it injects fresh noise
each step, so — like Euler–Maruyama — it contracts a trained network's errors instead of
carrying them to the end.

Step s → t, h = λ_t − λ_s > 0 (λ = log α/σ), x̂_0 outputs m_0 (at s) and m_1 (at the previous
time, r = h_prev/h):

    x_t = (σ_t/σ_s) e^{−h} x_s + α_t (1 − e^{−2h}) m_0 + ½ α_t (1 − e^{−2h}) (m_0 − m_1)/r
          + σ_t √(1 − e^{−2h}) z,     z ~ N(0, I)

(the first line without the D_1 term is the exact solution of the linear part with x̂_0 frozen:
SDE-DPM-Solver++1, Lu et al. 2022b Eq. 9 with the noise σ_t √(1 − e^{−2h}) z).
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from .base import CountingScore, SampleResult, randn_like, run_steps
from .dpm_solver import _coefficients


def sample_dpm_solver_sde(
    score_fn,
    sde,
    x,
    timesteps,
    *,
    step_hook=None,
    generator=None,
    snapshot_every=0,
    resample=1,
    denoise=True,
    progress=False,
    order=2,
    s_noise=1.0,
) -> SampleResult:
    """SDE-DPM-Solver++(1 or 2M): one score evaluation per step, NFE = steps (+1 with denoise).

    ``s_noise`` scales the injected noise (1 = the reverse SDE; 0 gives a deterministic but
    not probability-flow-consistent scheme — use dpm_solver for that)."""
    order = int(order)
    if order not in (1, 2):
        raise UserError(f"SDE-DPM-Solver++ order must be 1 or 2, got {order}")
    score = CountingScore(score_fn)
    timesteps = torch.as_tensor(timesteps, dtype=torch.float64)
    index = {float(t): i for i, t in enumerate(timesteps)}
    coefs = [_coefficients(sde, t) for t in timesteps]
    outputs = {}  # grid index -> x̂_0 there

    def step(x, t, t_next):
        i, j = index[float(t)], index[float(t_next)]
        (alpha_s, std_s, lam_s), (alpha_t, std_t, lam_t) = coefs[i], coefs[j]
        outputs[i] = (x + std_s**2 * score(x, timesteps[i])) / alpha_s
        for old in [k for k in outputs if k < i - 1]:
            del outputs[old]
        h = lam_t - lam_s
        one_minus = -math.expm1(-2 * h)  # 1 − e^{−2h}
        x_next = (std_t / std_s) * math.exp(-h) * x + alpha_t * one_minus * outputs[i]
        if order == 2 and (i - 1) in outputs:
            r = (lam_s - coefs[i - 1][2]) / h
            x_next = x_next + 0.5 * alpha_t * one_minus * (outputs[i] - outputs[i - 1]) / r
        return x_next + float(s_noise) * std_t * math.sqrt(one_minus) * randn_like(x, generator)

    return run_steps(
        step,
        x,
        timesteps,
        sde=sde,
        score=score,
        step_hook=step_hook,
        generator=generator,
        snapshot_every=snapshot_every,
        resample=resample,
        denoise=denoise,
        progress=progress,
        desc=f"sde-dpmsolver++{order}",
    )
