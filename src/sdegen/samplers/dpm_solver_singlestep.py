"""Singlestep DPM-Solver-2 / -3 (Lu et al. 2022, NeurIPS, Alg. 1 and App. A.3; data-prediction
forms from Lu et al. 2022b, App. A): each grid interval s → t is one self-contained step that
evaluates the model at 1 (order 2) or 2 (order 3) intermediate log-SNRs λ_s + r h, so it needs
no history (unlike the multistep solvers) and its order is reached from the first step.

Noise prediction, h = λ_t − λ_s, ε_s = ε̂(x_s, s), s_i the time with λ = λ_s + r_i h:
  order 2 (r_1 = 1/2):
    u   = α_{s1}/α_s x − σ_{s1}(e^{r_1 h} − 1) ε_s
    x_t = α_t/α_s x − σ_t(e^h − 1) ε_s − σ_t/(2 r_1) (e^h − 1)(ε̂(u, s1) − ε_s)
  order 3 (r_1 = 1/3, r_2 = 2/3):
    u_1 = α_{s1}/α_s x − σ_{s1}(e^{r_1 h} − 1) ε_s,                     D_1 = ε̂(u_1, s1) − ε_s
    u_2 = α_{s2}/α_s x − σ_{s2}(e^{r_2 h} − 1) ε_s − σ_{s2} r_2/r_1 ((e^{r_2 h} − 1)/(r_2 h) − 1) D_1
    x_t = α_t/α_s x − σ_t(e^h − 1) ε_s − σ_t/r_2 ((e^h − 1)/h − 1) (ε̂(u_2, s2) − ε_s)
Data prediction swaps (α, ε̂, e^{h}) for (σ, x̂_0, e^{−h}) with the opposite sign of the φ terms.
"""

from __future__ import annotations

import math

import torch

from .base import CountingScore, SampleResult, run_steps
from .dpm_solver import _coefficients, check_solver


def sample_dpm_solver_singlestep(
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
    order=3,
    algorithm="dpmsolver",
) -> SampleResult:
    """Singlestep DPM-Solver-k on the given grid: NFE = order · steps (+1 with denoise).

    ``order`` 1 is DDIM; 2 and 3 are the paper's DPM-Solver-2 and -3 (Lu et al. 2022, Alg. 1, with
    r_1 = 1/2, resp. r_1 = 1/3, r_2 = 2/3).  ``algorithm``: dpmsolver (noise prediction, the
    paper's) or dpmsolver++ (data prediction)."""
    order, data_prediction = check_solver("DPM-Solver", algorithm, order)
    score = CountingScore(score_fn)

    def at_log_snr(lam):
        t = sde.t_from_log_snr(torch.tensor(lam, dtype=torch.float64)).to(torch.float64)
        return t, _coefficients(sde, t)

    def model(x, t, coef):
        alpha, std, _ = coef
        grad = score(x, t)
        return (x + std**2 * grad) / alpha if data_prediction else -std * grad

    def first_order(x, m, s_coef, u_coef):
        """DDIM from s to u with model output m at s (phi_1 term only)."""
        (alpha_s, std_s, lam_s), (alpha_u, std_u, lam_u) = s_coef, u_coef
        h = lam_u - lam_s
        if data_prediction:
            return (std_u / std_s) * x - alpha_u * math.expm1(-h) * m
        return (alpha_u / alpha_s) * x - std_u * math.expm1(h) * m

    def step(x, t, t_next):
        s_coef, t_coef = _coefficients(sde, t), _coefficients(sde, t_next)
        m_s = model(x, t, s_coef)
        x_t = first_order(x, m_s, s_coef, t_coef)
        if order == 1:
            return x_t
        alpha_t, std_t, lam_t = t_coef
        h = lam_t - s_coef[2]
        if order == 2:
            r1 = 0.5
            s1, c1 = at_log_snr(s_coef[2] + r1 * h)
            d1 = model(first_order(x, m_s, s_coef, c1), s1, c1) - m_s
            if data_prediction:
                return x_t - alpha_t / (2 * r1) * math.expm1(-h) * d1
            return x_t - std_t / (2 * r1) * math.expm1(h) * d1
        r1, r2 = 1.0 / 3.0, 2.0 / 3.0
        s1, c1 = at_log_snr(s_coef[2] + r1 * h)
        s2, c2 = at_log_snr(s_coef[2] + r2 * h)
        d1 = model(first_order(x, m_s, s_coef, c1), s1, c1) - m_s
        u2 = first_order(x, m_s, s_coef, c2)
        if data_prediction:  # + r2/r1 α_{s2} ((e^{−r2 h} − 1)/(r2 h) + 1) D_1
            u2 = u2 + (r2 / r1) * c2[0] * (math.expm1(-r2 * h) / (r2 * h) + 1.0) * d1
        else:  # − r2/r1 σ_{s2} ((e^{r2 h} − 1)/(r2 h) − 1) D_1
            u2 = u2 - (r2 / r1) * c2[1] * (math.expm1(r2 * h) / (r2 * h) - 1.0) * d1
        d2 = model(u2, s2, c2) - m_s
        if data_prediction:  # + 1/r2 α_t ((e^{−h} − 1)/h + 1) D_2
            return x_t + (1.0 / r2) * alpha_t * (math.expm1(-h) / h + 1.0) * d2
        return x_t - (1.0 / r2) * std_t * (math.expm1(h) / h - 1.0) * d2

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
        desc=f"{algorithm}-singlestep-{order}",
    )
