"""Predictor–corrector sampling (Song et al. 2021, Sec. 4.2, Alg. 1–5).

Every predictor and corrector is written for a generic linear SDE through its marginal
p_0t = N(α(t) x_0, σ(t)² I) only, so VE, VP and sub-VP (which has no discrete α_i) all work.
For one step from t down to s = t_next the forward transition is

    x_t | x_s ~ N(a x_s, v I),   a = α_t/α_s,   v = σ_t² − a² σ_s²,

which plays the role of the discrete chain's (√(1−β_i), β_i) for VP and (1, σ_i² − σ_{i−1}²) for VE.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..sde.base import SDE
from .base import CountingScore, SampleResult, randn_like, run_steps

PREDICTORS = ("euler_maruyama", "reverse_diffusion", "ancestral", "none")
CORRECTORS = ("langevin", "annealed_langevin", "none")


def transition(sde: SDE, s, t):
    """(a, v) of the forward transition x_t | x_s ~ N(a x_s, v I) for s < t (floats)."""
    s, t = (torch.as_tensor(v, dtype=torch.float64) for v in (s, t))
    a = torch.exp(sde.log_alpha(t) - sde.log_alpha(s))
    v = sde.marginal_std(t) ** 2 - a**2 * sde.marginal_std(s) ** 2
    return float(a), float(v.clamp(min=0.0))


def euler_maruyama_predictor(score, sde, x, t, s, generator):
    """Reverse SDE, Euler–Maruyama (Song et al. 2021, Eq. 6): x_s = x − [f − g² ∇log p] Δ + g √Δ z."""
    dt = float(t - s)
    g = float(sde.diffusion(t))
    return x - sde.reverse_drift(x, t, score(x, t)) * dt + g * dt**0.5 * randn_like(x, generator)


def reverse_diffusion_predictor(score, sde, x, t, s, generator):
    """Reverse diffusion (Song et al. 2021, Eq. 46 / Alg. 2): with the discretised forward step
    x_t = x_s + f_i(x_s) + G_i z,  f_i(x) = (a − 1) x,  G_i² = v:
        x_s = x − f_i(x) + G_i² ∇log p_t(x) + G_i z."""
    a, v = transition(sde, s, t)
    return x - (a - 1.0) * x + v * score(x, t) + v**0.5 * randn_like(x, generator)


def ancestral_predictor(score, sde, x, t, s, generator):
    """Ancestral sampling (Ho et al. 2020 for VP, Song & Ermon 2019 / Song et al. 2021 Eq. 47 for VE),
    for any linear SDE: draw from the Gaussian posterior q(x_s | x_t, x̂_0) with Tweedie's
    x̂_0 = (x_t + σ_t² ∇log p_t)/α_t.  Its mean simplifies to (x_t + v ∇log p_t)/a and its variance
    is v σ_s²/σ_t² (VP: DDPM's β̃; VE: σ_{i−1}²(σ_i² − σ_{i−1}²)/σ_i²)."""
    a, v = transition(sde, s, t)
    std_s, std_t = (float(sde.marginal_std(torch.as_tensor(u, dtype=torch.float64))) for u in (s, t))
    mean = (x + v * score(x, t)) / a
    return mean + (v * std_s**2 / std_t**2) ** 0.5 * randn_like(x, generator)


def langevin_corrector(score, sde, x, t, s, snr, generator):
    """Langevin corrector (Song et al. 2021, Alg. 4/5): ε = 2 α_i (r ‖z‖/‖∇log p‖)², with r the
    target signal-to-noise ratio and α_i = 1 − β_i the discrete chain's step factor, here
    (α_t/α_s)² of the transition to the next grid time s (1 for VE; score_sde ``sampling.py``
    uses its discrete ``alphas``); x ← x + ε ∇log p_t(x) + √(2ε) z."""
    grad = score(x, t)
    noise = randn_like(x, generator)
    grad_norm = grad.flatten(1).norm(dim=1).mean()
    noise_norm = noise.flatten(1).norm(dim=1).mean()
    a, _ = transition(sde, s, t)
    step = 2 * a**2 * (snr * noise_norm / grad_norm) ** 2
    return x + step * grad + (2 * step).sqrt() * noise


def annealed_langevin_corrector(score, sde, x, t, s, snr, generator):
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1) with ε = 2 (r σ(t))² from the marginal."""
    std = float(sde.marginal_std(torch.as_tensor(t, dtype=torch.float64)))
    step = 2 * (snr * std) ** 2
    return x + step * score(x, t) + (2 * step) ** 0.5 * randn_like(x, generator)


_PREDICT = {
    "euler_maruyama": euler_maruyama_predictor,
    "reverse_diffusion": reverse_diffusion_predictor,
    "ancestral": ancestral_predictor,
}
_CORRECT = {"langevin": langevin_corrector, "annealed_langevin": annealed_langevin_corrector}


def sample_pc(
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
    predictor="reverse_diffusion",
    corrector="langevin",
    corrector_steps=1,
    snr=0.16,
) -> SampleResult:
    """Predictor–corrector sampler (Song et al. 2021, Alg. 1): at each t, ``corrector_steps``
    corrector updates at t, then one predictor step t → t_next.
    NFE = steps · (corrector_steps + [predictor ≠ none]) (+1 with denoise)."""
    if predictor not in PREDICTORS:
        raise UserError(f"unknown predictor {predictor!r}; choose one of {PREDICTORS}")
    if corrector not in CORRECTORS:
        raise UserError(f"unknown corrector {corrector!r}; choose one of {CORRECTORS}")
    score = CountingScore(score_fn)
    predict, correct = _PREDICT.get(predictor), _CORRECT.get(corrector)
    n_correct = int(corrector_steps) if correct is not None else 0

    def step(x, t, t_next):
        for _ in range(n_correct):
            x = correct(score, sde, x, t, t_next, float(snr), generator)
        return predict(score, sde, x, t, t_next, generator) if predict is not None else x

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
        desc=f"pc[{predictor}+{corrector}]",
    )
