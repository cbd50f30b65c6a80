"""Euler–Maruyama on the reverse-time SDE (Song et al. 2021, Eq. 6; Kloeden & Platen 1992)."""

from .base import CountingScore, SampleResult, randn_like, run_steps


def sample_em(
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
) -> SampleResult:
    """x_{t-Δ} = x_t − [f(x,t) − g² s(x,t)] Δ + g √Δ z,  z ~ N(0, I), with Δ = t − t_next > 0."""
    score = CountingScore(score_fn)

    def step(x, t, t_next):
        dt = float(t - t_next)
        g = float(sde.diffusion(t))
        drift = sde.reverse_drift(x, t, score(x, t))
        return x - drift * dt + g * dt**0.5 * randn_like(x, generator)

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
        desc="euler-maruyama",
    )
