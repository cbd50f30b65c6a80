"""EDM's 2nd-order samplers (Karras et al. 2022, Alg. 1 deterministic, Alg. 2 stochastic) for any
linear SDE.

With the noise-to-signal ratio s(t) = σ_t/α_t = e^{−λ(t)} and the scaled state x̃ = x/α_t, the
probability-flow ODE of every linear SDE becomes EDM's ODE (Karras et al. 2022, Eq. 4 with
s(t) = 1, σ(t) = t):

    dx̃/ds = (x̃ − D(x̃; s))/s = ε̂(x, t) = −σ_t ∇log p_t(x),     D = x̂_0 = (x + σ_t² ∇log p_t)/α_t.

Heun's method in s on the ρ = 7 grid (``grid: edm``) is Alg. 1.  EDM's last step, an Euler step
to s = 0, is exactly Tweedie's formula, i.e. ``denoise: true``: N grid intervals + denoise is
EDM with N + 1 noise levels and 2N + 1 NFE.  EDM's σ_max = 80 is the driver's ``start_noise: 80``
(linear VP/sub-VP reach σ/α ≈ 152 at T: the grid then starts at the t where σ/α = 80, from
x ~ N(0, σ(t)² I)).
"""

from __future__ import annotations

import torch

from .base import CountingScore, SampleResult, run_steps


def sample_heun(
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
    s_churn=0.0,
    s_tmin=0.0,
    s_tmax=float("inf"),
    s_noise=1.0,
) -> SampleResult:
    """Karras et al. 2022, Alg. 1 (``s_churn = 0``, deterministic) or Alg. 2 (stochastic):
    NFE = 2 · steps (+1 with denoise).

    Alg. 2: at each step whose noise-to-signal ratio s_i = σ/α lies in [s_tmin, s_tmax], first
    raise it to ŝ = (1 + γ) s_i, γ = min(s_churn/steps, √2 − 1), by adding fresh noise of std
    √(ŝ² − s_i²) · s_noise to the scaled state (line 5–6), then take the Heun step from ŝ."""
    score = CountingScore(score_fn)
    timesteps = torch.as_tensor(timesteps, dtype=torch.float64)
    n_steps = len(timesteps) - 1
    gamma_max = min(float(s_churn) / n_steps, 2**0.5 - 1) if s_churn > 0 else 0.0
    s_top = float(torch.exp(-sde.log_snr(torch.tensor(float(sde.T), dtype=torch.float64))))  # σ/α at T

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
        if gamma_max > 0 and s_tmin <= s <= s_tmax:  # Alg. 2 lines 4–6: churn
            s_hat = min(s * (1 + gamma_max), s_top)
            if s_hat > s:
                noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x_scaled = x_scaled + (s_hat**2 - s**2) ** 0.5 * float(s_noise) * noise
                t = sde.t_from_log_snr(-torch.log(torch.tensor(s_hat, dtype=torch.float64))).to(torch.float64)
                alpha, s = coefs(t)
        d = eps_hat(x_scaled, t, alpha, s * alpha)  # Alg. 1 line 4: d_i = (x_i − D(x_i; t_i))/t_i
        x_euler = x_scaled + (s_next - s) * d  # line 5: Euler step
        d_next = eps_hat(x_euler, t_next, alpha_next, s_next * alpha_next)  # line 7
        x_scaled = x_scaled + (s_next - s) * (d + d_next) / 2  # line 8: trapezoidal correction
        return alpha_next * x_scaled

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
        desc="edm-heun" if gamma_max == 0 else "edm-stochastic",
    )
