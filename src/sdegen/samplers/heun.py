"""EDM's deterministic 2nd-order sampler (Karras et al. 2022, Alg. 1) for any linear SDE.

With the noise-to-signal ratio s(t) = σ_t/α_t = e^{−λ(t)} and the scaled state x̃ = x/α_t, the
probability-flow ODE of every linear SDE becomes EDM's ODE (Karras et al. 2022, Eq. 4 with
s(t) = 1, σ(t) = t):

    dx̃/ds = (x̃ − D(x̃; s))/s = ε̂(x, t) = −σ_t ∇log p_t(x),     D = x̂_0 = (x + σ_t² ∇log p_t)/α_t.

Heun's method in s on the ρ = 7 grid (``grid: edm``) is Alg. 1.  EDM's last step, an Euler step
to s = 0, is exactly Tweedie's formula, i.e. ``denoise: true``: N grid intervals + denoise is
EDM with N + 1 noise levels and 2N + 1 NFE.
"""

from __future__ import annotations

import torch

from .base import CountingScore, SampleResult, run_steps


def sample_heun(score_fn, sde, x, timesteps, *, step_hook=None, generator=None, snapshot_every=0, resample=1,
                denoise=True, progress=False) -> SampleResult:
    """Karras et al. 2022, Alg. 1 (S_churn = 0): NFE = 2 · steps (+1 with denoise)."""
    score = CountingScore(score_fn)

    def coefs(t):
        t = torch.as_tensor(t, dtype=torch.float64)
        alpha, std = float(sde.alpha(t)), float(sde.marginal_std(t))
        return alpha, std / alpha  # α_t and s_t = σ_t/α_t

    def eps_hat(x_scaled, t, alpha, std):
        return -std * score(alpha * x_scaled, t)  # dx̃/ds = ε̂

    def step(x, t, t_next):
        alpha, s = coefs(t)
        alpha_next, s_next = coefs(t_next)
        x_scaled = x / alpha
        d = eps_hat(x_scaled, t, alpha, s * alpha)  # Alg. 1 line 4: d_i = (x_i − D(x_i; t_i))/t_i
        x_euler = x_scaled + (s_next - s) * d  # line 5: Euler step
        d_next = eps_hat(x_euler, t_next, alpha_next, s_next * alpha_next)  # line 7
        x_scaled = x_scaled + (s_next - s) * (d + d_next) / 2  # line 8: trapezoidal correction
        return alpha_next * x_scaled

    return run_steps(step, x, timesteps, sde=sde, score=score, step_hook=step_hook, generator=generator,
                     snapshot_every=snapshot_every, resample=resample, denoise=denoise, progress=progress,
                     desc="edm-heun")
