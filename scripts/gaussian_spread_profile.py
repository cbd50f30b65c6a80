"""A sampler's error on one Gaussian component, as a function of the component's std: exact, from one run.

For a Gaussian component of std s the exact score is linear, so every sampler here (deterministic ones:
`dpm_solver`, `unipc`, `dpm_solver_singlestep`, `heun`, `ode`) is a linear map of the scaled state, and the
spread factor c(s) it applies, divided by the exact flow's s/√(s² + σ_start²), gives the per-dimension
gap −(c² − 1)/2 (nats/dim; negative = over-dispersed, positive = over-concentrated) from a single
deterministic draw: a one-component mixture whose dimensions carry a ladder of stds, started from ones.
The prior's own mismatch (N(0, σ_start²) against N(0, s² + σ_start²)) is left out: it is the same for
every solver.  On the log-SNR grid the error is the same for every std well inside the grid (scale
invariance), e.g. `dpm_solver` +0.015 at 9 steps, +0.0025 at 19 (docs/samplers.md).  A grid that follows
the data's std (the focus grid) is laid out for data std 0.5 (EDM's default; `sampler.data_std=...` to change):

    .venv/bin/python scripts/gaussian_spread_profile.py dpm_solver steps=9
    .venv/bin/python scripts/gaussian_spread_profile.py heun steps=17 grid=logsnr end_noise=0.002
"""

from __future__ import annotations

import argparse
import math

import torch
import yaml

from sdegen.bench.gaussian import spread_gap
from sdegen.runtime.config import group_config


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sampler", help="a configs/sampler name, e.g. dpm_solver")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE sampler overrides (YAML values)")
    parser.add_argument("--sde", default="vp-linear")
    parser.add_argument("--s-min", type=float, default=0.01)
    parser.add_argument("--s-max", type=float, default=1.0)
    args = parser.parse_args()
    cfg = group_config("sampler", args.sampler)
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"override {item!r} is not KEY=VALUE")
        cfg[key] = yaml.safe_load(value)
    stds = torch.exp(torch.linspace(math.log(args.s_min), math.log(args.s_max), 21, dtype=torch.float64))
    gaps = spread_gap(cfg, stds, args.sde)
    print(f"{args.sampler} {' '.join(args.overrides)} on {args.sde}: per-dimension gap of one Gaussian of std s")
    for s, g in zip(stds.tolist(), gaps.tolist()):
        print(f"  s = {s:7.4f}   gap {g:+.4f}")


if __name__ == "__main__":
    main()
