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

Mixture families (``GaussianMixture.multiscale`` unless said; three disjoint seed sets: a and b were drawn
after the fixed-centre 10-NFE recipe; a chose the data-relative focus centre, b checked it, c held it out):
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
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from bench_samplers import HELDOUT, TUNING  # scripts/ is on sys.path when this script runs

from sdegen.metrics.gap import data_log_likelihood
from sdegen.models.gmm import GaussianMixture, GMMScore
from sdegen.runtime.config import group_config
from sdegen.samplers import resolve_auto, sample, start_time
from sdegen.sde import standard_sdes

SDE = standard_sdes()["vp-linear"]
OUT = Path("outputs/bench")
#: the six mixtures of scripts/bench_samplers.py (tuning, then held-out)
BENCH = [*TUNING.values(), *HELDOUT.values()]
SETS = {
    "a": [("issue", s) for s in range(1000, 1006)] + [("rand", s) for s in range(2000, 2010)]
         + [("x2", s) for s in (3000, 3001, 3002)] + [("x05", s) for s in (3100, 3101, 3102)]
         + [("large", s) for s in (3200, 3201)] + [("hd", s) for s in (3300, 3301, 3302, 3303)],
    "b": [("issue", s) for s in range(5000, 5008)] + [("rand", s) for s in range(6000, 6012)]
         + [("x2", s) for s in (7000, 7001)] + [("x05", s) for s in (7100, 7101)]
         + [("large", s) for s in (7200,)] + [("hd", s) for s in (7300, 7301, 7302, 7303)]
         + [("bench", s) for s in range(6)],
    # drawn after the data-relative focus centre was chosen on a and checked on b: a hold-out with two
    # more data scales (means ×3 / ×0.3) and whole-data scalings (means and stds ×2 / ×0.5)
    "c": [("issue", s) for s in range(9000, 9004)] + [("rand", s) for s in range(9100, 9106)]
         + [("x2", s) for s in (9200, 9201)] + [("x05", s) for s in (9300, 9301)]
         + [("x3", s) for s in (9400, 9401)] + [("x03", s) for s in (9500, 9501)]
         + [("s2", s) for s in (9600, 9601)] + [("s05", s) for s in (9700, 9701)]
         + [("large", s) for s in (9800, 9801)] + [("hd", s) for s in (9900, 9901)],
}
#: the factor by which a family scales the means (and, for s2 / s05, the stds too) of a random 16-d mixture
SCALED = {"x2": (2.0, 1.0), "x05": (0.5, 1.0), "x3": (3.0, 1.0), "x03": (0.3, 1.0), "s2": (2.0, 2.0), "s05": (0.5, 0.5)}


def random_spec(seed):
    """K 2–8, D 16–64, stds log-uniform from [0.02, 0.05] up to [0.3, 0.6]."""
    g = np.random.default_rng(seed)
    num_components, dim = int(g.integers(2, 9)), int(g.choice([16, 24, 32, 48, 64]))
    std_min, std_max = float(np.exp(g.uniform(math.log(0.02), math.log(0.05)))), float(g.uniform(0.3, 0.6))
    return dict(num_components=num_components, shape=(1, 1, dim), std_min=std_min, std_max=std_max, seed=seed)


def make_mixture(family: str, seed: int) -> GaussianMixture:
    if family == "issue":
        return GaussianMixture.multiscale(4, (1, 4, 4), 0.03, 0.4, seed)
    if family == "rand":
        return GaussianMixture.multiscale(**random_spec(seed))
    if family in SCALED:
        base = GaussianMixture.multiscale(**random_spec(seed) | dict(shape=(1, 4, 4)))
        mean_factor, std_factor = SCALED[family]
        return GaussianMixture(base.means * mean_factor, base.stds * std_factor, base.weights, base.shape)
    if family == "large":
        return GaussianMixture.multiscale(int(np.random.default_rng(seed).integers(3, 7)), (1, 4, 8), 0.2, 0.8, seed)
    if family == "hd":
        g = np.random.default_rng(seed)
        return GaussianMixture.multiscale(int(g.integers(2, 4)), (1, 1, int(g.choice([48, 64]))),
                                          float(g.uniform(0.02, 0.03)), float(g.uniform(0.4, 0.6)), seed)
    if family == "bench":
        return GaussianMixture.multiscale(**BENCH[seed])
    raise ValueError(f"unknown mixture family {family!r}")


def sampler_config(name: str, overrides=()) -> dict:
    """``configs/sampler/<name>.yaml`` with KEY=VALUE overrides (YAML values)."""
    cfg = group_config("sampler", name)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"override {item!r} is not KEY=VALUE")
        value = yaml.safe_load(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
            try:
                value = float(value)
            except ValueError:
                pass
        cfg[key] = value
    return cfg


class Problem:
    """One mixture, its prior draws and the exact ODE's log-densities from them (cached)."""

    def __init__(self, family, seed, n, start_noise, cache: Path):
        self.name, self.mixture = f"{family}-{seed}", make_mixture(family, seed)
        self.score = GMMScore(self.mixture, SDE)
        self.shape = (n, *self.mixture.shape)
        self.x_init = torch.randn(self.shape, generator=torch.Generator().manual_seed(1234 + seed)) * SDE.prior_std
        path = cache / f"{self.name}-n{n}-start{start_noise:g}.pt"
        if path.is_file():
            self.exact = torch.load(path, weights_only=True)
        else:
            exact_ode = sampler_config("ode", [f"start_noise={start_noise}", "end_noise=1.0e-4", "rtol=1.0e-7", "atol=1.0e-7"])
            self.exact = self.log_density(self.run(exact_ode))
            cache.mkdir(parents=True, exist_ok=True)
            torch.save(self.exact, path)
        self.exact_gap = float(self.exact.mean()) - data_log_likelihood(self.mixture, 100_000)[0]

    def run(self, cfg):
        with torch.no_grad():
            return sample(cfg, self.score, SDE, self.shape, x_init=self.x_init.clone(), data_std=self.mixture.data_std)

    def log_density(self, result):
        return self.mixture.log_prob(result.x.double()).reshape(-1) / self.mixture.dim

    def solver_error(self, cfg):
        result = self.run(cfg)
        diff = self.log_density(result) - self.exact
        return float(diff.mean()), float(diff.std() / math.sqrt(len(diff))), result.nfe


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sampler", help="a configs/sampler name, e.g. dpm_solver")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE sampler overrides (YAML values)")
    parser.add_argument("--sets", default="a,b,c", help="comma-separated mixture sets (a, b, c)")
    parser.add_argument("--n", type=int, default=2000, help="prior draws per mixture")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--mixtures", default=None, help="comma-separated subset of the mixture names, e.g. issue-1000,hd-3300")
    parser.add_argument("--out", default=str(OUT), help="where solver_error.{md,json} and the exact-ODE cache go")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = sampler_config(args.sampler, args.overrides)
    start_noise = float(torch.exp(-SDE.log_snr(torch.tensor(start_time(SDE, resolve_auto(cfg)), dtype=torch.float64))))
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
            rows.append(dict(set=set_name, mixture=problem.name, K=mixture.num_components, D=mixture.dim,
                             std_min=float(mixture.stds.min()), std_max=float(mixture.stds.max()),
                             solver_error=error, se=se, exact_gap=problem.exact_gap, nfe=nfe))
            print(f"{set_name} {problem.name:11s} K {mixture.num_components} D {mixture.dim:2d} stds "
                  f"{rows[-1]['std_min']:.3f}–{rows[-1]['std_max']:.2f}  solver error {error:+.4f} ± {se:.4f}  "
                  f"(exact ODE gap {problem.exact_gap:+.4f})  NFE {nfe}", flush=True)
    if not rows:
        parser.error("no mixture matched --sets / --mixtures")
    lines = [f"**{label}** (σ/α from {start_noise:g}; n = {args.n} paired draws per mixture; VP-linear = every SDE)",
             "", "| set | worst \\|solver error\\| | mean | most positive | most negative | mixtures |", "|---|---|---|---|---|---|"]
    for set_name in [*args.sets.split(","), "all"]:
        sub = [r for r in rows if set_name == "all" or r["set"] == set_name]
        if not sub:
            continue
        errors = [r["solver_error"] for r in sub]
        worst = max(sub, key=lambda r: abs(r["solver_error"]))
        lines.append(f"| {set_name} | {abs(worst['solver_error']):.4f} ({worst['mixture']}) | "
                     f"{np.mean(np.abs(errors)):.4f} | {max(errors):+.4f} | {min(errors):+.4f} | {len(sub)} |")
    table = "\n".join(lines)
    print("\n" + table + f"\n\n({time.time() - began:.0f} s)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "solver_error.md").write_text(table + "\n")
    (out / "solver_error.json").write_text(json.dumps(dict(setting=label, start_noise=start_noise, rows=rows), indent=1))


if __name__ == "__main__":
    main()
