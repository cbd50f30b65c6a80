"""A sampler's own error on many exact Gaussian mixtures, paired against the exact probability-flow ODE.

    .venv/bin/python scripts/bench_solver_error.py dpm_solver steps=9            # the 10-NFE recipe, sets a, b, c
    .venv/bin/python scripts/bench_solver_error.py dpm_solver                    # the 20-NFE default
    .venv/bin/python scripts/bench_solver_error.py heun steps=17 --sets a        # EDM Alg. 2 at 35 NFE

The log-likelihood gap of one sample draw (``sdegen.metrics.gap``) carries its Monte-Carlo noise: at
n = 10,000 in 48-d its standard error is ≈ 0.002–0.003 nats/dim, as large as the differences between
settings near 0.01.  Here every setting and the exact ODE (dopri5, rtol = atol = 1e-7, down to σ/α = 1e-4,
Tweedie's last step) start from the *same* prior draws at the sampler's own start (σ/α = ``start_noise``),
and the figure is

    solver error = mean over draws of (log p(x_sampler) − log p(x_exact)) / D     (nats/dim)

whose paired standard error is 0.0002–0.002 at n = 2,000.  It is the solver's bias: the gap a large draw
would read, less the exact flow's from the same start.  That flow's own gap (printed, from the same n draws,
so with the unpaired SE) is the start's prior mismatch: N(0, σ² I) instead of p_σ; ≈ 0 on average here but
−0.0085 on hd-3300 from σ/α = 10 (docs/samplers.md).  Positive = over-concentrated, negative = over-dispersed,
as for the gap.

Mixture families (``sdegen.bench.mixtures``; ``GaussianMixture.multiscale`` unless said; three disjoint seed
sets: a chose the data-relative focus centre, b checked it, c holds it out):
  issue  — like the issue's held-out problem: K = 4, 16-d, per-dimension stds 0.03–0.4;
  rand   — K 2–8, D 16–64, stds from 0.02–0.05 up to 0.3–0.6 (drawn from the seed);
  x2 / x05 — 16-d random mixtures with their means scaled by 2 / 0.5 (other data scales);
  large  — stds 0.2–0.8 only;  hd — K 2–3 in 48 / 64 dimensions with stds from 0.02–0.03 (the hard
  over-concentrated case);  bench — the six mixtures of ``scripts/bench_samplers.py`` (set b only);
  x3 / x03 — means ×3 / ×0.3;  s2 / s05 — means and stds ×2 / ×0.5 (set c only).
Every sampler gets the mixture's data std (``sample(data_std=...)``), as ``sdegen sample data=gmm`` does.
On every linear SDE a sampler that runs in (x/α, σ/α) — all the deterministic ones here — performs the same
computation from the same draws once it starts below σ(T)/α(T), so one SDE (VP-linear) stands for all five.
Exact-ODE solutions are cached in outputs/bench/solver_error_cache/ per mixture, n and start (the first run
≈ 5 min on 2 cores for the three sets, a rerun ≈ 1.5 min).
Writes outputs/bench/solver_error.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sdegen.bench.mixtures import SDE, SETS, Problem, sampler_config
from sdegen.samplers import build

OUT = Path("outputs/bench")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sampler", help="a configs/sampler name, e.g. dpm_solver")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE sampler overrides (YAML values)")
    parser.add_argument("--sets", default="a,b,c", help="comma-separated mixture sets (a, b, c)")
    parser.add_argument("--n", type=int, default=2000, help="prior draws per mixture")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument(
        "--mixtures", default=None, help="comma-separated subset of the mixture names, e.g. issue-1000,hd-3300"
    )
    parser.add_argument("--out", default=str(OUT), help="where solver_error.{md,json} and the exact-ODE cache go")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = sampler_config(args.sampler, args.overrides)
    start_noise = float(torch.exp(-SDE.log_snr(torch.tensor(build(cfg).start_time(SDE), dtype=torch.float64))))
    label = " ".join([args.sampler, *args.overrides])
    out, wanted = Path(args.out), None if args.mixtures is None else set(args.mixtures.split(","))
    unknown = sorted(set(args.sets.split(",")) - set(SETS))
    if unknown:
        parser.error(f"unknown mixture set {unknown[0]!r}; choose from {', '.join(SETS)}")
    rows, began = [], time.time()
    for set_name in args.sets.split(","):
        for family, seed in SETS[set_name]:
            if wanted is not None and f"{family}-{seed}" not in wanted:
                continue
            problem = Problem(family, seed, args.n, round(start_noise, 6), out / "solver_error_cache")
            error, se, nfe = problem.solver_error(cfg)
            mixture = problem.mixture
            rows.append(
                dict(
                    set=set_name,
                    mixture=problem.name,
                    K=mixture.num_components,
                    D=mixture.dim,
                    std_min=float(mixture.stds.min()),
                    std_max=float(mixture.stds.max()),
                    solver_error=error,
                    se=se,
                    exact_gap=problem.exact_gap,
                    nfe=nfe,
                )
            )
            print(
                f"{set_name} {problem.name:11s} K {mixture.num_components} D {mixture.dim:2d} stds "
                f"{rows[-1]['std_min']:.3f}–{rows[-1]['std_max']:.2f}  solver error {error:+.4f} ± {se:.4f}  "
                f"(exact ODE gap {problem.exact_gap:+.4f})  NFE {nfe}",
                flush=True,
            )
    if not rows:
        parser.error("no mixture matched --sets / --mixtures")
    lines = [
        f"**{label}** (σ/α from {start_noise:g}; n = {args.n} paired draws per mixture; VP-linear = every SDE)",
        "",
        "| set | worst \\|solver error\\| | mean | most positive | most negative | mixtures |",
        "|---|---|---|---|---|---|",
    ]
    for set_name in [*args.sets.split(","), "all"]:
        sub = [r for r in rows if set_name == "all" or r["set"] == set_name]
        if not sub:
            continue
        errors = [r["solver_error"] for r in sub]
        worst = max(sub, key=lambda r: abs(r["solver_error"]))
        lines.append(
            f"| {set_name} | {abs(worst['solver_error']):.4f} ({worst['mixture']}) | "
            f"{np.mean(np.abs(errors)):.4f} | {max(errors):+.4f} | {min(errors):+.4f} | {len(sub)} |"
        )
    table = "\n".join(lines)
    print("\n" + table + f"\n\n({time.time() - began:.0f} s)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "solver_error.md").write_text(table + "\n")
    (out / "solver_error.json").write_text(
        json.dumps(dict(setting=label, start_noise=start_noise, rows=rows), indent=1)
    )


if __name__ == "__main__":
    main()
