"""DPM-Solver and DPM-Solver++ (Lu et al. 2022, NeurIPS; Lu et al. 2022b, arXiv:2211.01095),
multistep, orders 1–3: exponential integrators of the probability-flow ODE in the log-SNR
λ(t) = log(α_t/σ_t).  They need only α(t), σ(t), λ(t) and its inverse, so they run unchanged on
VP, sub-VP and VE (α ≡ 1).

With h = λ_t − λ_s > 0 for a step s → t (towards the data), the exact solution is
    noise prediction ε̂ = −σ ∇log p:   x_t = (α_t/α_s) x_s − α_t ∫_{λ_s}^{λ_t} e^{−λ} ε̂ dλ,
    data prediction x̂_0 = (x + σ² ∇log p)/α:   x_t = (σ_t/σ_s) x_s + σ_t ∫_{λ_s}^{λ_t} e^{λ} x̂_0 dλ,
and the k-th order solvers Taylor-expand ε̂ or x̂_0 in λ using the previous k − 1 model outputs
(finite differences D1, D2).  Order 1 is DDIM (Song et al. 2021a).
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from .base import CountingScore, SampleResult, run_steps

ALGORITHMS = ("dpmsolver", "dpmsolver++")


def check_solver(name: str, algorithm: str, order) -> tuple[int, bool]:
    """``(order, data_prediction)`` of an exponential-integrator solver's options (DPM-Solver, UniPC):
    ``algorithm`` dpmsolver (noise prediction) or dpmsolver++ (data prediction), order 1, 2 or 3."""
    if algorithm not in ALGORITHMS:
        raise UserError(f"unknown {name} algorithm {algorithm!r}; choose dpmsolver (noise) or dpmsolver++ (data)")
    order = int(order)
    if order not in (1, 2, 3):
        raise UserError(f"{name} order must be 1, 2 or 3, got {order}")
    return order, algorithm == "dpmsolver++"


def _coefficients(sde, t):
    t = torch.as_tensor(t, dtype=torch.float64)
    log_alpha, std = float(sde.log_alpha(t)), float(sde.marginal_std(t))
    return math.exp(log_alpha), std, log_alpha - math.log(std)


def dpm_solver_update(x, models, lambdas, t_coefs, s_coefs, algorithm):
    """One multistep update s → t of order len(models) (1, 2 or 3).

    ``models`` are the model outputs (ε̂ or x̂_0) at the previous times, most recent LAST;
    ``lambdas`` their log-SNRs followed by λ_t; ``*_coefs`` are (α, σ, λ) at t and at s
    (the most recent time).  Lu et al. 2022b, Alg. 2 and App. B (the 'dpmsolver' variant).
    """
    alpha_t, std_t, lam_t = t_coefs
    alpha_s, std_s, lam_s = s_coefs
    h = lam_t - lam_s
    order = len(models)
    m0 = models[-1]
    if order == 1:
        if algorithm == "dpmsolver++":  # x_t = σ_t/σ_s x_s − α_t (e^{−h} − 1) x̂_0
            return (std_t / std_s) * x - alpha_t * math.expm1(-h) * m0
        return (alpha_t / alpha_s) * x - std_t * math.expm1(h) * m0  # DDIM: − σ_t (e^h − 1) ε̂
    m1 = models[-2]
    r0 = (lambdas[-2] - lambdas[-3]) / h  # h_0/h, h_0 = λ_s − λ_{prev}
    d1_0 = (m0 - m1) / r0
    if order == 2:
        if algorithm == "dpmsolver++":
            phi_1 = math.expm1(-h)
            return (std_t / std_s) * x - alpha_t * phi_1 * m0 - 0.5 * alpha_t * phi_1 * d1_0
        phi_1 = math.expm1(h)
        return (alpha_t / alpha_s) * x - std_t * phi_1 * m0 - 0.5 * std_t * phi_1 * d1_0
    m2 = models[-3]
    r1 = (lambdas[-3] - lambdas[-4]) / h
    d1_1 = (m1 - m2) / r1
    d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)  # h · m'(λ_s) + O(h³)
    # h² · m''(λ_s) + O(h³).  The reference code (dpm_solver_pytorch.py, diffusers) uses half of
    # this, (d1_0 − d1_1)/(r0 + r1) = h² m''/2, with the same φ_3 weight, which makes its local
    # error O(h³) (2nd order); with the full second difference it is O(h⁴) — see
    # tests/test_samplers.py::test_dpm_solver_update_local_order.
    d2 = 2 * (d1_0 - d1_1) / (r0 + r1)
    if algorithm == "dpmsolver++":
        phi_1 = math.expm1(-h)
        phi_2 = phi_1 / h + 1.0
        phi_3 = phi_2 / h - 0.5
        return (std_t / std_s) * x - alpha_t * phi_1 * m0 + alpha_t * phi_2 * d1 - alpha_t * phi_3 * d2
    phi_1 = math.expm1(h)
    phi_2 = phi_1 / h - 1.0
    phi_3 = phi_2 / h - 0.5
    return (alpha_t / alpha_s) * x - std_t * phi_1 * m0 - std_t * phi_2 * d1 - std_t * phi_3 * d2


def sample_dpm_solver(
    score_fn,
    sde,
    x,
    timesteps,
    *,
    step_hook=None,
    generator=None,
    snapshot_every=0,
    resample=1,
    denoise=False,
    progress=False,
    order=3,
    algorithm="dpmsolver++",
    lower_order_final=True,
) -> SampleResult:
    """Multistep DPM-Solver(++) (Lu et al. 2022b, Alg. 2) on the given grid (best: uniform in λ).

    Warm start: the first k − 1 steps use orders 1, …, k − 1.  With ``lower_order_final`` and fewer
    than 15 steps the last steps drop to order 1/2 (stabilises very short runs; Lu et al. 2022b).
    One score evaluation per step, at the state the step starts from (the output at the final
    time is never needed): NFE = steps (+1 with denoise); a step_hook's changes are seen by the
    next evaluation, and RePaint resampling re-evaluates each redone step.
    """
    order, _ = check_solver("DPM-Solver", algorithm, order)
    score = CountingScore(score_fn)
    timesteps = torch.as_tensor(timesteps, dtype=torch.float64)
    n_steps = len(timesteps) - 1
    index = {float(t): i for i, t in enumerate(timesteps)}
    coefs = [_coefficients(sde, t) for t in timesteps]  # (α, σ, λ) on the grid
    outputs = {}  # grid index -> model output (ε̂ or x̂_0) there

    def step(x, t, t_next):
        i, j = index[float(t)], index[float(t_next)]
        alpha, std, _ = coefs[i]
        grad = score(x, timesteps[i])
        outputs[i] = (x + std**2 * grad) / alpha if algorithm == "dpmsolver++" else -std * grad  # x̂_0 or ε̂
        for old in [k for k in outputs if k < i - 2]:
            del outputs[old]
        k = 1  # order of this step: as many consecutive previous outputs as are available
        while k < order and (i - k) in outputs:
            k += 1
        if lower_order_final and n_steps < 15:
            k = min(k, n_steps - i)
        used = list(range(i - k + 1, i + 1))
        lambdas = [coefs[u][2] for u in used] + [coefs[j][2]]
        return dpm_solver_update(x, [outputs[u] for u in used], lambdas, coefs[j], coefs[i], algorithm)

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
        desc=f"{algorithm}-{order}",
    )
