"""Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes", NeurIPS,
Alg. 1) for any linear SDE.

ODE samplers have small discretisation errors but carry a network's errors to the end; SDE samplers
contract accumulated errors with fresh noise but need many steps.  Restart runs EDM's Heun ODE
(Karras et al. 2022, Alg. 1, as in ``heun.py``) on the main grid and, on reaching the low end s_min of
a restart interval [s_min, s_max], K times: jumps forward to s_max by the exact forward transition
and re-runs the ODE back down to s_min.  The forward jump contracts the accumulated error (Xu et
al. 2023, Thm. 2: the TV distance to the target shrinks by a factor < 1 per restart), the ODE
keeps each pass cheap and accurate.

Everything is written in the noise-to-signal ratio s = σ_t/α_t and the scaled state x̃ = x/α_t,
where every linear SDE is EDM's VE form x̃_t = x_0 + s ε (see ``heun.py``); the forward jump is then

    x̃_{s_max} = x̃_{s_min} + √(s_max² − s_min²) z,     z ~ N(0, I)       (Xu et al. 2023, Eq. 4, Alg. 1)

and x = α_t x̃.  An interval is ``[n, K, s_min, s_max]``: n Heun steps on EDM's ρ = 7 grid from
s_max down to s_min, repeated K times (the reference code's N_Restart counts grid *points*, n + 1).
s_min is moved to the nearest main-grid point (in log σ/α) and the restart ends exactly there.

NFE = 2 · steps + Σ_i 2 · n_i · K_i  (+1 with ``denoise``, EDM's last Euler step to s = 0).
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from .base import CountingScore, SampleResult, randn_like, run_steps


def _intervals(restarts, main_ratios):
    """``{main-grid index: [(n, K, s_max), ...]}`` from ``[[n, K, s_min, s_max], ...]``."""
    plan = {}
    for entry in restarts or ():
        if len(entry) != 4:
            raise UserError(f"a restart interval is [steps, K, s_min, s_max] (σ/α), got {entry!r}")
        n, k, s_min, s_max = entry
        if int(n) != n or n < 1 or int(k) != k or k < 0:
            raise UserError(f"restart interval {entry!r}: steps must be an integer ≥ 1 and K an integer ≥ 0")
        if not 0 < s_min < s_max:
            raise UserError(f"restart interval {entry!r}: needs 0 < s_min < s_max (noise-to-signal ratios σ/α)")
        # the grid point nearest s_min in log σ/α (never the start: there is nothing to restart yet)
        index = 1 + min(range(len(main_ratios) - 1), key=lambda j: abs(math.log(main_ratios[j + 1] / s_min)))
        if not s_max > main_ratios[index]:
            raise UserError(
                f"restart interval {entry!r}: s_max must exceed σ/α = {main_ratios[index]:.4g} "
                f"of the grid point its s_min snaps to"
            )
        plan.setdefault(index, []).append((int(n), int(k), float(s_max)))
    return plan


def sample_restart(
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
    restarts=((3, 4, 0.1, 1.0),),
    rho=7.0,
    s_noise=1.0,
) -> SampleResult:
    """Xu et al. 2023, Alg. 1: Heun ODE steps on the main grid plus restart intervals
    ``restarts = [[n, K, s_min, s_max], ...]`` (σ/α).  NFE = 2 · steps + Σ 2 n K (+1 with denoise).

    ``s_noise`` scales the forward jump's noise (1 = the exact forward process; the reference
    code's benchmarks use 1.003).  The step hook runs after every ODE step, inside restarts too."""
    score = CountingScore(score_fn)
    timesteps = torch.as_tensor(timesteps, dtype=torch.float64)

    def ratio(t):  # s = σ/α
        return float(torch.exp(-sde.log_snr(torch.as_tensor(t, dtype=torch.float64))))

    main_ratios = [ratio(t) for t in timesteps]
    plan = _intervals(restarts, main_ratios)
    index = {float(t): i for i, t in enumerate(timesteps)}
    s_top = ratio(sde.T)  # σ/α at T: a restart never starts above it

    def t_of(s):
        return sde.t_from_log_snr(-torch.log(torch.tensor(s, dtype=torch.float64))).to(torch.float64)

    def heun(x, t, t_next):
        """Karras et al. 2022, Alg. 1 lines 4–8 in (s, x̃): dx̃/ds = ε̂ = −σ_t ∇log p_t(x)."""
        t, t_next = torch.as_tensor(t, dtype=torch.float64), torch.as_tensor(t_next, dtype=torch.float64)
        alpha, alpha_next = float(sde.alpha(t)), float(sde.alpha(t_next))
        s, s_next = ratio(t), ratio(t_next)
        x_scaled = x / alpha
        d = -s * alpha * score(x, t)
        x_euler = x_scaled + (s_next - s) * d
        d_next = -s_next * alpha_next * score(alpha_next * x_euler, t_next)
        return alpha_next * (x_scaled + (s_next - s) * (d + d_next) / 2)

    def step(x, t, t_next):
        x = heun(x, t, t_next)
        i = index[float(t_next)]
        passes = [(n, s_max) for n, k, s_max in plan.get(i, ()) for _ in range(k)]
        s_min, alpha_min = main_ratios[i], float(sde.alpha(timesteps[i]))
        for n, s_max in passes:
            if step_hook is not None:  # the state the jump starts from is hooked (run_steps hooks the last)
                x = step_hook(x, timesteps[i])
            s_max = min(s_max, s_top)
            t_max = t_of(s_max)
            # forward jump s_min → s_max in the scaled variable (Alg. 1 line 6)
            noise = randn_like(x, generator)
            x = float(sde.alpha(t_max)) * (x / alpha_min + float(s_noise) * math.sqrt(s_max**2 - s_min**2) * noise)
            # EDM ρ-grid from s_max to s_min, ending exactly on the main grid point
            j = torch.arange(n + 1, dtype=torch.float64) / n
            inner = (s_max ** (1 / rho) + j * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
            inner_t = [t_max] + [t_of(float(v)) for v in inner[1:-1]] + [timesteps[i]]
            for q, (u, u_next) in enumerate(zip(inner_t[:-1], inner_t[1:])):
                x = heun(x, u, u_next)
                if step_hook is not None and q < n - 1:
                    x = step_hook(x, u_next)
        return x

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
        desc="restart",
    )
