"""Sampler benchmark on exact Gaussian-mixture scores: the log-likelihood gap against NFE for every
sampler × SDE, on several mixtures (the ones the defaults were tuned on and held-out ones).

    .venv/bin/python scripts/bench_samplers.py                 # full: tuning + held-out + guided
    .venv/bin/python scripts/bench_samplers.py --quick         # defaults only, one mixture, n = 4000 (~1 min)
    .venv/bin/python scripts/bench_samplers.py --suite heldout # defaults on the held-out mixtures only
    .venv/bin/python scripts/bench_samplers.py --sweeps-only --figure  # only the gap-vs-NFE figure

Gap = (E_samples[log p] − E_data[log p]) / D in nats/dim (``sdegen.metrics.gap``), with its standard
error (printed; ≈ 0.002 at the default n = 20,000 for 16-d mixtures, 10,000 above; the step sweeps
use half that, and the 1000-step EM / PC runs 5,000 to keep the CPU time moderate).
Negative = over-dispersed (noise left in the samples),
positive = over-concentrated.  The within-component sliced W2 / noise floor ("sw", 1.00 = as good
as exact samples; see tests/test_samplers.py for why within-component) is kept in the JSON.
Writes outputs/bench/samplers.{md,json,png} (and with --figure docs/figures/bench_samplers.png).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import torch

from sdegen.bench.mixtures import HELDOUT, TUNING
from sdegen.guidance.classifier import classifier_guidance
from sdegen.metrics.distances import sliced_wasserstein2
from sdegen.metrics.gap import data_log_likelihood, log_likelihood_gap
from sdegen.models.gmm import GaussianMixture, GMMScore
from sdegen.runtime.config import group_config
from sdegen.samplers import sample
from sdegen.sde import standard_sdes

SDES = standard_sdes()

# (label, sampler config name, overrides): the step sweeps run on the tuning mixtures
SWEEPS = (
    [(f"dpm_solver {n}", "dpm_solver", {"steps": n}) for n in (5, 9, 14, 19, 29)]
    + [(f"unipc {n}", "unipc", {"steps": n}) for n in (5, 9, 14, 19, 29)]
    + [(f"dpm_solver_singlestep {n}", "dpm_solver_singlestep", {"steps": n}) for n in (2, 3, 5, 6, 10)]
    + [(f"heun {n}", "heun", {"steps": n}) for n in (9, 14, 17, 24, 30, 45)]  # 12–24 steps: Alg. 2 (presets)
    + [(f"dpm_solver_sde {n}", "dpm_solver_sde", {"steps": n}) for n in (20, 50)]
    + [(f"em {n}", "em", {"steps": n}) for n in (100, 300)]
    + [(f"pc {n}", "pc", {"steps": n}) for n in (100, 300)]
    + [("ode rk4 10", "ode", {"steps": 10, "method": "rk4"}), ("ode rk4 25", "ode", {"steps": 25, "method": "rk4"})]
)
TEN_NFE_LABEL = "dpm_solver steps=9 (10 NFE preset: 10 → 0.02, focus grid at 3 × data std, half-step end)"
HEUN_35_LABEL = "heun steps=17 (35 NFE preset: EDM Alg. 2, S_noise < 1)"
#: every sampler at its defaults, the presets at 10 and 35 NFE, and settings they are compared with
DEFAULTS = (
    [
        (f"{name} (default)", name, {})
        for name in (
            "dpm_solver",
            "unipc",
            "dpm_solver_singlestep",
            "heun",
            "dpm_solver_sde",
            "restart",
            "ode",
            "em",
            "pc",
        )
    ]
    + [("heun churn (S_churn 10)", "heun", {"s_churn": 10.0, "steps": 60, "grid": "logsnr", "end_noise": 0.002})]
    # the 10-NFE recipe (docs/samplers.md): `steps=9` alone; its step-count preset starts at σ/α = 10
    # and ends at 0.02 on a focus grid centred at σ/α = 3 × the data's std (order 3 to the end, + the half-step end)
    + [(TEN_NFE_LABEL, "dpm_solver", {"steps": 9})]
    + [
        (
            "dpm_solver steps=9, focus centre fixed at 2.5 (boost 1)",
            "dpm_solver",
            {"steps": 9, "grid_options": {"center": 2.5, "boost": 1.0, "width": 0.5}},
        )
    ]
    + [
        (
            "dpm_solver focus centre fixed at 2 (boost 1.5)",
            "dpm_solver",
            {"grid_options": {"center": 2.0, "boost": 1.5, "width": 0.5}},
        )
    ]
    + [
        (
            "dpm_solver steps=9, log-SNR grid 10 → 0.004, Tweedie",
            "dpm_solver",
            {"steps": 9, "end_noise": 0.004, "grid": "logsnr", "denoise": True},
        )
    ]
    # heun at 35 NFE: `steps=17` alone is EDM's Alg. 2 with S_noise < 1 (its preset); Alg. 1 beside it
    + [(HEUN_35_LABEL, "heun", {"steps": 17})]
    + [("heun steps=40 (Alg. 1)", "heun", {"steps": 40})]
    + [
        (
            "heun 35 NFE Alg. 1 (17 log-SNR steps, end 0.002)",
            "heun",
            {"steps": 17, "grid": "logsnr", "end_noise": 0.002, "s_churn": 0.0},
        )
    ]
    + [
        (
            "dpm_solver log-SNR grid (20 → 0.006)",
            "dpm_solver",
            {"grid": "logsnr", "end_noise": 0.006},
        )
    ]
    + [
        (
            "dpm_solver ++2M 20, log-SNR grid, end 0.01",
            "dpm_solver",
            {
                "steps": 20,
                "algorithm": "dpmsolver++",
                "order": 2,
                "denoise": False,
                "end_noise": 0.01,
                "start_noise": None,
                "grid": "logsnr",
            },
        )
    ]
)
QUICK = {
    "dpm_solver (default)",
    "unipc (default)",
    "heun (default)",
    "dpm_solver_singlestep (default)",
    "dpm_solver_sde (default)",
    "restart (default)",
    "ode (default)",
    TEN_NFE_LABEL,
    HEUN_35_LABEL,
}


def sampler_cfg(name, overrides):
    return {**group_config("sampler", name), **overrides}


def within_component_sw(mixture, a, b):
    la, lb = mixture.component_log_probs(a).argmax(1), mixture.component_log_probs(b).argmax(1)
    total = 0.0
    for k in range(mixture.num_components):
        xa, xb = a[la == k], b[lb == k]
        n = min(len(xa), len(xb))
        if n > 1:
            total += n * sliced_wasserstein2(xa[:n], xb[:n], n_projections=64) ** 2
    return math.sqrt(total / len(a))


def run(mixture_name, mixture, settings, sdes, n, rows, *, guided_label=None, sw=True, n_slow=None):
    """Every setting × SDE on one mixture; appends result dicts to ``rows``.  With ``guided_label``
    the score is the exact-posterior classifier-guided one and the target is that component."""
    target = mixture
    if guided_label is not None:
        k = guided_label
        target = mixture.component(k)
    reference = data_log_likelihood(target, 200_000, seed=123)
    g = torch.Generator().manual_seed(0)
    refs = [target.sample(n, generator=g)[0] for _ in range(3)] if sw else None
    floor = within_component_sw(target, refs[0], refs[1]) if sw else None
    for sde_name in sdes:
        sde = SDES[sde_name]
        model = GMMScore(mixture, sde)
        score = model
        if guided_label is not None:
            score = classifier_guidance(model, model.class_log_posterior, guided_label, 1.0)
        for label, name, overrides in settings:
            cfg = sampler_cfg(name, overrides)
            slow = n_slow is not None and name in ("em", "pc") and int(cfg["steps"]) >= 1000
            start = time.perf_counter()
            with torch.no_grad():
                result = sample(
                    cfg,
                    score,
                    sde,
                    (n_slow if slow else n, *mixture.shape),
                    generator=torch.Generator().manual_seed(1),
                    data_std=mixture.data_std,
                )
            seconds = time.perf_counter() - start
            gap = log_likelihood_gap(target, result.x, reference=reference)
            ratio = float("nan")
            if sw and math.isfinite(gap.gap):  # against a floor computed at the same sample size
                m = len(result.x)
                base = floor if m == n else within_component_sw(target, refs[0][:m], refs[1][:m])
                ratio = within_component_sw(target, result.x.float(), refs[2][:m]) / base
            rows.append(
                {
                    "mixture": mixture_name,
                    "sde": sde_name,
                    "setting": label,
                    "sampler": name,
                    "nfe": result.nfe,
                    "gap": gap.gap,
                    "se": gap.se,
                    "sw_ratio": ratio,
                    "seconds": seconds,
                    "guided": guided_label is not None,
                }
            )
            print(
                f"{mixture_name:15s} {sde_name:13s} {label:44s} NFE {result.nfe:5d}  gap {gap.gap:+.4f} ± "
                f"{gap.se:.4f}  sw {ratio:5.2f}  {seconds:6.1f}s",
                flush=True,
            )


def markdown_tables(rows):
    out = []
    for mixture in dict.fromkeys(r["mixture"] for r in rows):
        sub = [r for r in rows if r["mixture"] == mixture]
        sdes = list(dict.fromkeys(r["sde"] for r in sub))
        cell = {(r["sde"], r["setting"]): r for r in sub}
        ses = sorted(r["se"] for r in sub if math.isfinite(r["se"]))
        median_se = ses[len(ses) // 2]
        out += [
            f"**{mixture}** — log-likelihood gap (nats/dim; median SE {median_se:.4f}), NFE in brackets",
            "",
            "| sampler | " + " | ".join(sdes) + " | max abs |",
            "|---|" + "---|" * (len(sdes) + 1),
        ]
        for s in dict.fromkeys(r["setting"] for r in sub):
            rs = [cell.get((d, s)) for d in sdes]
            cells = ["" if r is None else f"{r['gap']:+.4f} ({r['nfe']})" for r in rs]
            worst = max(abs(r["gap"]) for r in rs if r is not None)
            out.append(f"| {s} | " + " | ".join(cells) + f" | {worst:.4f} |")
        out.append("")
    return "\n".join(out)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    swept = [
        r
        for r in rows
        if "default" not in r["setting"]
        and "churn" not in r["setting"]
        and "NFE" not in r["setting"]
        and not r["guided"]
    ]
    mixtures = list(dict.fromkeys(r["mixture"] for r in swept))
    if not mixtures:
        return
    fig, axes = plt.subplots(1, len(mixtures), figsize=(4.2 * len(mixtures), 3.6), sharey=True, squeeze=False)
    all_families = list(dict.fromkeys(r["setting"].rsplit(" ", 1)[0] for r in swept))
    colors = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(all_families)}
    for ax, mixture in zip(axes[0], mixtures):
        families = {}
        for r in swept:
            if r["mixture"] == mixture:
                family = r["setting"].rsplit(" ", 1)[0]
                families.setdefault(family, {}).setdefault(r["setting"], []).append(r)
        for family, settings in families.items():
            pts = sorted((max(r["nfe"] for r in rs), max(abs(r["gap"]) for r in rs)) for rs in settings.values())
            ax.plot(
                [p[0] for p in pts],
                [min(max(p[1], 1e-4), 1.0) for p in pts],
                "o-",
                ms=3,
                label=family,
                color=colors[family],
            )
        ax.axhline(0.01, color="k", lw=0.7, ls="--")
        ax.axhline(0.005, color="k", lw=0.7, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(mixture)
        ax.set_xlabel("NFE")
    axes[0][0].set_ylabel("|gap|, worst of the 5 SDEs (nats/dim)")
    handles = [plt.Line2D([], [], color=colors[f], marker="o", ms=3, label=f) for f in all_families]
    fig.legend(handles=handles, fontsize=7, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="defaults of the fast samplers, one mixture, n = 4000")
    parser.add_argument("--suite", default="all", choices=["all", "tuning", "heldout", "guided"])
    parser.add_argument("--n", type=int, default=None, help="samples per run (default 20000 for 16-d, 10000 above)")
    parser.add_argument("--n-sweep", type=int, default=None, help="samples per run of the step sweeps (default n/2)")
    parser.add_argument("--n-slow", type=int, default=5000, help="samples per run of the 1000-step EM / PC (CPU time)")
    parser.add_argument("--sdes", default=",".join(SDES))
    parser.add_argument("--out", default="outputs/bench")
    parser.add_argument("--figure", action="store_true", help="also copy the plot to docs/figures/bench_samplers.png")
    parser.add_argument("--mixtures", default=None, help="comma-separated subset of the mixture names")
    parser.add_argument("--skip", default="", help="comma-separated setting labels to leave out (CPU time)")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="only rebuild the tables and plot from earlier samplers.json files",
    )
    parser.add_argument(
        "--sweeps-only",
        action="store_true",
        help="only the step sweeps on the tuning mixtures (what the figure plots: ≈ 15 min on one core)",
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sdes = args.sdes.split(",")
    rows = []

    def size(mixture):
        return args.n or (4000 if args.quick else (20000 if mixture.dim <= 16 else 10000))

    def wanted(name):
        return args.mixtures is None or name in args.mixtures.split(",")

    skip = set(filter(None, args.skip.split(",")))
    global SWEEPS, DEFAULTS
    SWEEPS = tuple(s for s in SWEEPS if s[0] not in skip and s[1] not in skip)
    DEFAULTS = tuple(s for s in DEFAULTS if s[0] not in skip and s[1] not in skip)

    if args.merge:
        for path in args.merge:
            rows += json.loads(Path(path).read_text())["rows"]
    elif args.quick:
        mixture = GaussianMixture.multiscale(**TUNING["multiscale-16d"])
        run("multiscale-16d", mixture, [s for s in DEFAULTS if s[0] in QUICK], sdes, size(mixture), rows)
    else:
        if args.suite in ("all", "tuning"):
            for name, spec in TUNING.items():
                if not wanted(name):
                    continue
                mixture = GaussianMixture.multiscale(**spec)
                if not args.sweeps_only:
                    run(name, mixture, list(DEFAULTS), sdes, size(mixture), rows, n_slow=args.n_slow)
                run(name, mixture, list(SWEEPS), sdes, args.n_sweep or size(mixture) // 2, rows, sw=False)
        if args.suite in ("all", "heldout") and not args.sweeps_only:
            for name, spec in HELDOUT.items():
                if not wanted(name):
                    continue
                mixture = GaussianMixture.multiscale(**spec)
                run(name, mixture, list(DEFAULTS), sdes, size(mixture), rows, n_slow=args.n_slow)
        # guided: exact posterior p_t(y | x), the target is component y
        if args.suite in ("all", "guided") and not args.sweeps_only:
            for name, spec in (("multiscale-16d", TUNING["multiscale-16d"]), ("heldout-16d", HELDOUT["heldout-16d"])):
                if not wanted(name):
                    continue
                mixture = GaussianMixture.multiscale(**spec)
                guided = [s for s in DEFAULTS if s[1] in ("dpm_solver", "unipc", "heun", "em") and "NFE" not in s[0]]
                run(
                    f"{name} guided y=2",
                    mixture,
                    guided,
                    sdes,
                    size(mixture),
                    rows,
                    guided_label=2,
                    sw=False,
                    n_slow=args.n_slow,
                )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "samplers.json").write_text(json.dumps({"rows": rows}, indent=1))
    tables = markdown_tables(rows)
    (out / "samplers.md").write_text(tables)
    print()
    print(tables)
    plot(rows, out / "samplers.png")
    if args.figure and (out / "samplers.png").exists():
        Path("docs/figures").mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "samplers.png", "docs/figures/bench_samplers.png")
    print(f"wrote {out / 'samplers.md'}, {out / 'samplers.json'}, {out / 'samplers.png'}")


if __name__ == "__main__":
    main()
