"""Probability-flow ODE sampling (Song et al. 2021, Sec. 4.3, Eq. 13):

    dx/dt = f(t) x − ½ g(t)² ∇log p_t(x),

integrated from T down to the end time, either adaptively with torchdiffeq's Dormand–Prince
``dopri5`` (Dormand & Prince 1980; the solver of Song et al.) or with a fixed-step
``euler``, ``heun`` (explicit trapezoid) or classical ``rk4`` on the time grid.
"""

from __future__ import annotations

import torch

from .base import CountingScore, SampleResult, final_denoise, run_steps

METHODS = ("dopri5", "euler", "heun", "rk4")


def _fixed_step(method, velocity):
    """One step x(t) → x(t + h) (h = t_next − t < 0) of a fixed-step Runge–Kutta method."""

    def euler(x, t, t_next):
        return x + float(t_next - t) * velocity(x, t)

    def heun(x, t, t_next):  # Heun / explicit trapezoid, 2nd order
        h = float(t_next - t)
        k1 = velocity(x, t)
        k2 = velocity(x + h * k1, t_next)
        return x + h * (k1 + k2) / 2

    def rk4(x, t, t_next):  # classical Runge–Kutta, 4th order
        h = float(t_next - t)
        t_mid = (t + t_next) / 2
        k1 = velocity(x, t)
        k2 = velocity(x + h / 2 * k1, t_mid)
        k3 = velocity(x + h / 2 * k2, t_mid)
        k4 = velocity(x + h * k3, t_next)
        return x + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6

    return {"euler": euler, "heun": heun, "rk4": rk4}[method]


def sample_ode(
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
    method="dopri5",
    rtol=1e-5,
    atol=1e-5,
) -> SampleResult:
    """Probability-flow ODE from timesteps[0] to timesteps[-1].

    ``dopri5``: adaptive (rtol, atol); the grid only fixes where snapshots are taken, so NFE
    does not depend on ``steps`` — unless a ``step_hook`` (or resampling) must act on the state
    between grid points, then each interval is one adaptive solve.  Fixed-step methods take one
    step per grid interval: NFE = steps · {euler: 1, heun: 2, rk4: 4} (+1 with denoise).
    """
    if method not in METHODS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {METHODS}")
    score = CountingScore(score_fn)

    def velocity(x, t):
        return sde.ode_drift(x, t, score(x, t))

    if method != "dopri5":
        return run_steps(
            _fixed_step(method, velocity),
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
            desc=f"pf-ode[{method}]",
        )

    from torchdiffeq import odeint

    # Like Song et al.'s RK45 (scipy, float64), the adaptive solver's state and time are float64
    # (float32 step-size control underflows near t = eps); the score sees the model's dtype.
    wide = torch.float32 if x.device.type == "mps" else torch.float64

    bar = None
    if progress and step_hook is None and resample == 1:  # one adaptive solve: show time left and NFE
        from tqdm.auto import tqdm

        t_first, t_last = float(timesteps[0]), float(timesteps[-1])
        bar = tqdm(
            total=round(t_first - t_last, 6),
            desc="pf-ode[dopri5]",
            leave=False,
            bar_format="{l_bar}{bar}| t {n:.4f}/{total:.4f} {postfix}",
        )

    def solve(x, times):
        times = torch.as_tensor(times, dtype=wide, device=x.device)
        t_end, t_start = float(times.min()), float(times.max())

        def velocity_wide(t, y):
            # dopri5 would otherwise probe t < eps (where σ(t)² < 0 for VP) in its first-step
            # guess; ``step_t`` makes it land on the end time instead of overshooting it.
            t = t.clamp(t_end, t_start)
            out = sde.ode_drift(y, t, score(y.to(x.dtype), t).to(wide))
            if bar is not None:  # the NFE so far, and how far the solver has come in t
                bar.n = max(bar.n, round(t_first - float(t), 6))
                bar.set_postfix(nfe=score.nfe, refresh=False)
                bar.refresh()
            return out

        path = odeint(
            velocity_wide,
            x.to(wide),
            times,
            rtol=float(rtol),
            atol=float(atol),
            method="dopri5",
            options={"step_t": times[-1:]},
        )
        return path.to(x.dtype)

    if step_hook is not None or resample > 1:
        return run_steps(
            lambda x, t, t_next: solve(x, torch.stack([t, t_next]))[-1],
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
            desc="pf-ode[dopri5]",
        )

    # one adaptive solve over the whole range; dense output at the grid gives the snapshots
    timesteps = torch.as_tensor(timesteps, dtype=torch.float64)
    path = solve(x, timesteps) if snapshot_every else solve(x, timesteps[[0, -1]])
    x = path[-1]
    if denoise:
        x = final_denoise(score, sde, x, timesteps[-1], denoise)
    if bar is not None:
        bar.close()
    if not snapshot_every:
        return SampleResult(x=x, nfe=score.nfe)
    keep = [0] + [i for i in range(1, len(timesteps)) if i % snapshot_every == 0 or i == len(timesteps) - 1]
    trajectory = [path[i].detach().cpu() for i in keep]
    trajectory[-1] = x.detach().cpu()
    return SampleResult(x=x, nfe=score.nfe, trajectory=trajectory, times=[float(timesteps[i]) for i in keep])
