"""EDM's Heun at few steps on the multi-scale mixtures, one Gaussian component at a time: why Alg. 1
cannot reach |gap| ≤ 0.01 at 35 NFE, and the Alg. 2 settings (S_churn, S_noise) that do.

For one Gaussian component of std s, EDM's ODE in the scaled variables (x̃ = x/α, σ = σ_t/α_t) is
linear, dx̃/dσ = σ (x̃ − μ)/(s² + σ²), with exact solution x̃ − μ ∝ √(s² + σ²).  Heun's method (Karras
et al. 2022, Alg. 1) on a grid σ_0 = 80 > … > σ_N, then the final Euler step to σ = 0 (= Tweedie),
multiplies the component's spread by a factor c(s) whose gap is −(c² − 1)/2 per dimension; once the
components are separated (σ below ≈ 1) every dimension of every component contributes this,
which reproduces the measured mixture gaps (17 log-SNR steps ending at 0.002: model −0.054…−0.059,
mixtures −0.049…−0.056).  This script minimises max_s |gap(s)| over s log-uniform in [s_min, s_max]
over ALL N-step grids (free σ_i; Adam on a soft maximum, several random starts), i.e. a lower bound
for any `sampler.grid`, and prints the optimal grid's gap profile and its mean over the stds:

    .venv/bin/python scripts/heun_gaussian_bound.py --steps 17 --s-min 0.02 --s-max 0.6    # ≈ 0.017
    .venv/bin/python scripts/heun_gaussian_bound.py --steps 17 --s-min 0.03 --s-max 0.4    # ≈ 0.012

EDM's stochastic sampler (Alg. 2) adds, at each step with S_tmin ≤ σ_i ≤ S_tmax, noise of variance
S_noise² (σ̂² − σ_i²), σ̂ = (1 + γ) σ_i, before the Heun step from σ̂; on one component the spread's
variance V then follows V ← f² (V + S_noise² (σ̂² − σ_i²)) with Heun's factor f.  With S_noise = 1 this is
exact noise and changes nothing in the model (the ODE error stays); with S_noise < 1 each churn contracts
the spread a little, and that contraction, spread over the σ band where the churn acts, cancels the
over-dispersion Heun's steps leave.  ``--churn-table`` fits, for each step count, the end point and S_noise
with γ = 0.2, S_tmin = 0.08, S_tmax = 2.5 on heun's shifted grid from σ = 80 (minimax over stds
0.02–0.6, the mixtures' range) and prints the rows of heun's step-count presets
(``sdegen.samplers.presets``; there, 12 and 13 steps carry a slightly larger S_noise, scanned on the tuning
mixtures: at so few steps the mixtures sit further above this one-component model; docs/samplers.md).
The models are ``sdegen.bench.gaussian``:

    .venv/bin/python scripts/heun_gaussian_bound.py --churn-table 12 24   # 17 steps: 0.0032 vs Alg. 1's 0.026
"""

from __future__ import annotations

import argparse
import math

import torch

from sdegen.bench.gaussian import best_grid, fit_churn, heun_spread_gap, shifted_sigmas


def churn_table(first, last, stds):
    print(
        f"# EDM Alg. 2 on the shifted grid from σ = 80: γ = 0.2 (s_churn = 0.2 · steps), s_tmin 0.08, s_tmax 2.5; "
        f"stds {float(stds[0]):.3g}–{float(stds[-1]):.3g}"
    )
    for steps in range(first, last + 1):
        worst, end, s_noise = fit_churn(steps, stds)
        det = min(
            float(heun_spread_gap(shifted_sigmas(steps, 80.0, e), stds).abs().max())
            for e in (0.002, 0.003, 0.005, 0.007, 0.01)
        )
        print(
            f"  - {{max_steps: {steps}, end_noise: {end:.4f}, s_churn: {0.2 * steps:.1f}, s_noise: {s_noise:.4f}}}"
            f"   # max |gap| {worst:.4f} (Alg. 1, best end: {det:.4f})"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=17)
    parser.add_argument("--s-min", type=float, default=0.02)
    parser.add_argument("--s-max", type=float, default=0.6)
    parser.add_argument("--start", type=float, default=80.0)
    parser.add_argument("--restarts", type=int, default=8)
    parser.add_argument(
        "--churn-table",
        type=int,
        nargs=2,
        metavar=("FIRST", "LAST"),
        default=None,
        help="fit Alg. 2's end point and S_noise for these step counts (stds 0.02–0.6)",
    )
    args = parser.parse_args()
    if args.churn_table:
        stds = torch.exp(torch.linspace(math.log(0.02), math.log(0.6), 60, dtype=torch.float64))
        churn_table(*args.churn_table, stds)
        return
    stds = torch.exp(torch.linspace(math.log(args.s_min), math.log(args.s_max), 80, dtype=torch.float64))

    for end in (0.002, 0.005):
        log_grid = torch.exp(torch.linspace(math.log(args.start), math.log(end), args.steps + 1, dtype=torch.float64))
        g = heun_spread_gap(log_grid, stds)
        print(f"log-SNR grid, {args.steps} steps, end {end}, + Tweedie: gap in [{g.min():+.4f}, {g.max():+.4f}]")
    for denoise in (True, False):
        worst, sigmas = best_grid(args.steps, stds, args.start, denoise=denoise, restarts=args.restarts)
        g = heun_spread_gap(sigmas, stds, denoise)
        print(
            f"best {args.steps}-step grid ({'+ Tweedie' if denoise else 'no final step'}): max |gap| {worst:.4f}, "
            f"mean over the stds {float(g.mean()):+.4f}; σ = {[round(v, 4) for v in sigmas.tolist()]}"
        )
        print("  gap at s = " + ", ".join(f"{float(s):.3g}: {float(v):+.4f}" for s, v in zip(stds[::10], g[::10])))


if __name__ == "__main__":
    main()
