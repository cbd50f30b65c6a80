"""What every sampler shares: the result type, NFE counting, the step loop with hooks,
snapshots and RePaint-style resampling, and the final Tweedie denoising step.

A sampler is a plain function

    sample_xxx(score_fn, sde, x, timesteps, *, step_hook=None, generator=None,
               snapshot_every=0, resample=1, denoise=True, progress=False, **options) -> SampleResult

where ``x`` is the initial state at ``timesteps[0]`` (usually ``sde.prior_sample``) and
``timesteps`` decreases from T to the end time.  It defines ``step(x, t, t_next)`` for its
algorithm and hands it to ``run_steps``; it owns nothing else (no files, no models, no logging).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..sde.base import SDE

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepHook = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SampleResult:
    x: torch.Tensor
    nfe: int
    trajectory: list = field(default_factory=list)  # snapshots x_t (on CPU), noise first
    times: list = field(default_factory=list)  # the t of each snapshot


class CountingScore:
    """Wraps a score function, broadcasting scalar t to the batch and counting network evaluations
    (a score function with ``network_evaluations`` = k, e.g. classifier-free guidance's 2, counts k per call)."""

    def __init__(self, score_fn: ScoreFn):
        self.score_fn = score_fn
        self.nfe = 0

    def __call__(self, x, t):
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        self.nfe += int(getattr(self.score_fn, "network_evaluations", 1))
        return self.score_fn(x, t)


def randn_like(x, generator=None):
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def forward_transition(sde: SDE, x_s, s, t, generator=None):
    """Draw x_t ~ p(x_t | x_s) for s < t: N(α_t/α_s x_s, σ_t² − (α_t/α_s)² σ_s²) (linear SDEs)."""
    s, t = (torch.as_tensor(v, dtype=torch.float64) for v in (s, t))
    ratio = torch.exp(sde.log_alpha(t) - sde.log_alpha(s))
    var = sde.marginal_std(t) ** 2 - ratio**2 * sde.marginal_std(s) ** 2
    return float(ratio) * x_s + float(var.clamp(min=0).sqrt()) * randn_like(x_s, generator)


def tweedie_denoise(score, sde: SDE, x, t):
    """E[x_0 | x_t] = (x_t + σ(t)² ∇log p_t(x_t)) / α(t)  (Tweedie's formula; Efron 2011)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    std, alpha = float(sde.marginal_std(t)), float(sde.alpha(t))
    return (x + std**2 * score(x, t)) / alpha


def final_denoise(score, sde: SDE, x, t, mode=True):
    """The last step, from σ(t)/α(t) to the data (1 NFE).

    ``True``: Tweedie, x → D(x) = E[x_0 | x_t] (EDM's final Euler step to σ = 0).  For a Gaussian
    component of std s it shrinks the spread's variance by the factor 1/(1 + ε), ε = σ²/s² (σ = σ(t)/α(t)):
    unbiased only for σ ≪ s.  ``"half"``: x̃ → (x̃ + D(x))/2 with x̃ = x/α, the data-prediction DDIM step to
    σ/2 (Song et al. 2021a; Lu et al. 2022b, Eq. 9 at order 1), then stop: the variance factor is then
    (1 + ε)(1 + 1/(1 + ε))²/4 = 1 + ε²/(4(1 + ε)), right to first order in ε for every s at once, so the end
    point no longer biases the spread (docs/samplers.md "The half-step end")."""
    denoised = tweedie_denoise(score, sde, x, t)
    if mode == "half":
        alpha = float(sde.alpha(torch.as_tensor(t, dtype=torch.float64)))
        return 0.5 * (x / alpha) + 0.5 * denoised
    return denoised


def run_steps(
    step,
    x,
    timesteps,
    *,
    sde: SDE,
    score: CountingScore,
    step_hook: StepHook | None = None,
    generator=None,
    snapshot_every: int = 0,
    resample: int = 1,
    denoise: bool | str = False,
    progress: bool = False,
    desc: str = "sampling",
) -> SampleResult:
    """Drive ``step(x, t, t_next) -> x_next`` along ``timesteps``.

    After each step ``step_hook(x_next, t_next)`` may transform the state (inpainting replaces
    the known pixels).  With ``resample = r > 1`` each step is redone r times, jumping back from
    t_next to t with the forward transition in between (RePaint, Lugmayr et al. 2022, Alg. 1).
    ``denoise`` ends with one Tweedie step at the last time (1 extra NFE); ``"half"``: half of it
    (``final_denoise``).
    """
    timesteps = torch.as_tensor(timesteps, dtype=torch.float64)
    snapshots, snap_times = [x.detach().cpu()], [float(timesteps[0])]
    n_steps = len(timesteps) - 1
    for i in tqdm(range(n_steps), desc=desc, disable=not progress, leave=False):
        t, t_next = timesteps[i], timesteps[i + 1]
        for r in range(resample):
            x_next = step(x, t, t_next)
            if step_hook is not None:
                x_next = step_hook(x_next, t_next)
            if r < resample - 1:
                x = forward_transition(sde, x_next, t_next, t, generator)
        x = x_next
        if snapshot_every and ((i + 1) % snapshot_every == 0 or i + 1 == n_steps):
            snapshots.append(x.detach().cpu())
            snap_times.append(float(t_next))
    if denoise:
        x = final_denoise(score, sde, x, timesteps[-1], denoise)
        if step_hook is not None:
            x = step_hook(x, torch.zeros((), dtype=torch.float64))
        if snapshot_every:
            snapshots[-1] = x.detach().cpu()
    return SampleResult(
        x=x, nfe=score.nfe, trajectory=snapshots if snapshot_every else [], times=snap_times if snapshot_every else []
    )
