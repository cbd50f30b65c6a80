"""Why EDM's Heun cannot reach |gap| ≤ 0.01 at 35 NFE on the multi-scale mixtures: a 1-D bound.

For one Gaussian component of std s, EDM's ODE in the scaled variables (x̃ = x/α, σ = σ_t/α_t) is
linear, dx̃/dσ = σ (x̃ − μ)/(s² + σ²), with exact solution x̃ − μ ∝ √(s² + σ²).  Heun's method (Karras
et al. 2022, Alg. 1) on a grid σ_0 = 80 > … > σ_N, then the final Euler step to σ = 0 (= Tweedie),
multiplies the component's spread by a factor c(s) whose gap is −(c² − 1)/2 per dimension; once the
components are separated (σ below ≈ 1) every dimension of every component contributes this,
which reproduces the measured mixture gaps (17 log-SNR steps ending at 0.002: model −0.054…−0.059,
mixtures −0.049…−0.056).  This script minimises max_s |gap(s)| over s log-uniform in [s_min, s_max]
over ALL N-step grids (Nelder–Mead + Powell on the log σ_i), i.e. a lower bound for any `sampler.grid`:

    .venv/bin/python scripts/heun_gaussian_bound.py --steps 17 --s-min 0.02 --s-max 0.6    # ≈ 0.019
    .venv/bin/python scripts/heun_gaussian_bound.py --steps 17 --s-min 0.03 --s-max 0.5    # ≈ 0.016
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.optimize import minimize


def heun_spread_gap(sigmas, s, denoise=True):
    """Gap (nats/dim) of one Gaussian of std s after Heun on the descending grid ``sigmas``."""
    slope = lambda sg: sg / (s**2 + sg**2)  # noqa: E731 - d log(x̃ − μ)/dσ
    y = 1.0
    for a, b in zip(sigmas[:-1], sigmas[1:]):
        y_euler = y * (1 + (b - a) * slope(a))
        y = y + (b - a) / 2 * (slope(a) * y + slope(b) * y_euler)
    c = y / (np.sqrt(s**2 + sigmas[-1] ** 2) / np.sqrt(s**2 + sigmas[0] ** 2))  # spread ratio at σ_N
    end = np.sqrt(s**2 + sigmas[-1] ** 2) / s
    c = c / end if denoise else c * end  # Tweedie shrinks by s²/(s² + σ²); stopping leaves the noise
    return -((c**2 - 1) / 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=17)
    parser.add_argument("--s-min", type=float, default=0.02)
    parser.add_argument("--s-max", type=float, default=0.6)
    parser.add_argument("--start", type=float, default=80.0)
    args = parser.parse_args()
    stds = np.exp(np.linspace(np.log(args.s_min), np.log(args.s_max), 25))

    def gaps(sigmas, denoise=True):
        return np.array([heun_spread_gap(sigmas, s, denoise) for s in stds])

    for end in (0.002, 0.005):
        log_grid = np.exp(np.linspace(np.log(args.start), np.log(end), args.steps + 1))
        g = gaps(log_grid)
        print(f"log-SNR grid, {args.steps} steps, end {end}, + Tweedie: gap in [{g.min():+.4f}, {g.max():+.4f}]")
    for denoise in (True, False):
        def objective(z):
            g = gaps(np.concatenate([[args.start], np.exp(np.sort(z)[::-1])]), denoise)
            return np.abs(g).max() + 0.1 * np.abs(g).mean()

        z = np.linspace(np.log(args.start), np.log(0.002), args.steps + 1)[1:]
        z = minimize(objective, z, method="Nelder-Mead",
                     options=dict(maxiter=40000, maxfev=40000, xatol=1e-6, fatol=1e-8, adaptive=True)).x
        z = minimize(objective, z, method="Powell", options=dict(maxiter=20000)).x
        sigmas = np.concatenate([[args.start], np.exp(np.sort(z)[::-1])])
        g = gaps(sigmas, denoise)
        print(f"best {args.steps}-step grid ({'+ Tweedie' if denoise else 'no final step'}): "
              f"max |gap| {np.abs(g).max():.4f}; σ = {np.round(sigmas, 4).tolist()}")


if __name__ == "__main__":
    main()
