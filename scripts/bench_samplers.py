"""Sampler benchmark on the exact Gaussian-mixture score: error vs NFE for every sampler × SDE.

    .venv/bin/python scripts/bench_samplers.py            # N = 5000 samples per run
    .venv/bin/python scripts/bench_samplers.py --quick    # N = 1000, fewer settings (~1 min)

Error = within-component sliced W2 to fresh mixture samples divided by the same distance between
two fresh sample sets of the same size (1.0 = indistinguishable at this N).  Samples are assigned
to their most likely component and compared component by component, because plain sliced W2 on
a well-separated mixture is dominated by the multinomial noise of the component counts; the
plain ratio ("sw") and the largest occupancy error ("occ", in binomial σ) are printed too.
Prints a Markdown table and writes outputs/bench/samplers.png (+ samplers.md, samplers.json).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from sdegen.cli import config_dir
from sdegen.metrics.distances import component_occupancy, sliced_wasserstein2
from sdegen.models.gmm import GaussianMixture, GMMScore
from sdegen.samplers import sample
from sdegen.sde import standard_sdes

SDES = standard_sdes()

# (label, sampler, overrides) — each sampler over a range of steps
SETTINGS = (
    [(f"em {n}", "em", {"steps": n}) for n in (100, 300, 1000)]
    + [(f"pc {n}", "pc", {"steps": n}) for n in (100, 300, 1000)]
    + [(f"ode dopri5 tol {tol:g}", "ode", {"options": {"rtol": tol, "atol": tol}}) for tol in (1e-2, 1e-3, 1e-5)]
    + [(f"ode rk4 {n}", "ode", {"steps": n, "options": {"method": "rk4"}}) for n in (10, 25)]
    + [(f"dpm_solver {n}", "dpm_solver", {"steps": n}) for n in (5, 8, 10, 15, 20, 25, 30)]
    + [(f"dpm_solver 3M {n}", "dpm_solver", {"steps": n, "options": {"order": 3}}) for n in (10, 20, 30)]
    + [(f"heun {n}", "heun", {"steps": n}) for n in (5, 9, 17, 24, 40)]
)
QUICK = {"em 1000", "pc 300", "ode dopri5 tol 1e-05", "dpm_solver 10", "dpm_solver 20", "dpm_solver 3M 20", "heun 9", "heun 24"}


def sampler_cfg(name, overrides):
    cfg = OmegaConf.to_container(OmegaConf.load(config_dir() / "sampler" / f"{name}.yaml"))
    cfg.update(overrides.get("options", {}))
    cfg.update({k: v for k, v in overrides.items() if k != "options"})
    return cfg


def within_component_sw(mixture, a, b):
    la, lb = mixture.component_log_probs(a).argmax(1), mixture.component_log_probs(b).argmax(1)
    total = 0.0
    for k in range(mixture.num_components):
        xa, xb = a[la == k], b[lb == k]
        n = min(len(xa), len(xb))
        if n > 1:
            total += n * sliced_wasserstein2(xa[:n], xb[:n], n_projections=128) ** 2
    return math.sqrt(total / len(a))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N=1000 and a few settings")
    parser.add_argument("--n", type=int, default=None, help="samples per run (default 5000; quick 1000)")
    parser.add_argument("--sdes", default=",".join(SDES))
    parser.add_argument("--out", default="outputs/bench")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = args.n or (1000 if args.quick else 5000)
    settings = [s for s in SETTINGS if not args.quick or s[0] in QUICK]
    mixture = GaussianMixture.multiscale(num_components=4, shape=(1, 4, 4), std_min=0.03, std_max=0.5, seed=0)
    g = torch.Generator().manual_seed(0)
    refs = [mixture.sample(n, generator=g)[0] for _ in range(4)]
    floor_c = sum(within_component_sw(mixture, refs[i], refs[i + 1]) for i in (0, 2)) / 2
    floor_p = sum(sliced_wasserstein2(refs[i], refs[i + 1]) for i in (0, 2)) / 2
    q = component_occupancy(mixture, mixture.sample(50000, generator=g)[0])
    rows = []
    for sde_name in args.sdes.split(","):
        sde = SDES[sde_name]
        model = GMMScore(mixture, sde)
        for label, name, overrides in settings:
            start = time.perf_counter()
            with torch.no_grad():
                result = sample(sampler_cfg(name, overrides), model, sde, (n, 1, 4, 4),
                                generator=torch.Generator().manual_seed(1))
            seconds = time.perf_counter() - start
            x = result.x.float()
            ok = bool(torch.isfinite(x).all())
            ratio = sum(within_component_sw(mixture, x, r) for r in refs[:2]) / 2 / floor_c if ok else float("inf")
            plain = sum(sliced_wasserstein2(x, r) for r in refs[:2]) / 2 / floor_p if ok else float("inf")
            occ = float(((component_occupancy(mixture, x) - q).abs() / (q * (1 - q) / n).sqrt()).max()) if ok else float("inf")
            rows.append({"sde": sde_name, "setting": label, "sampler": name, "nfe": result.nfe, "ratio": ratio,
                         "sw_ratio": plain, "occ_sigma": occ, "seconds": seconds})
            print(f"{sde_name:13s} {label:24s} NFE {result.nfe:5d}  ratio {ratio:6.3f}  sw {plain:5.2f}  "
                  f"occ {occ:4.1f}σ  {seconds:6.1f}s", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "samplers.json").write_text(json.dumps({"n": n, "rows": rows}, indent=1))
    table = markdown_table(rows, n)
    (out / "samplers.md").write_text(table)
    print()
    print(table)
    plot(rows, out / "samplers.png", n)
    print(f"\nwrote {out / 'samplers.png'}, {out / 'samplers.md'}")


def markdown_table(rows, n):
    sdes = list(dict.fromkeys(r["sde"] for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    cell = {(r["sde"], r["setting"]): r for r in rows}
    lines = [f"Within-component sliced-W2 / noise floor (N = {n}; 1.00 = as good as exact samples). NFE in brackets.", "",
             "| sampler | " + " | ".join(sdes) + " |", "|---|" + "---|" * len(sdes)]
    for s in settings:
        cells = []
        for d in sdes:
            r = cell.get((d, s))
            cells.append("" if r is None else f"{r['ratio']:.2f} ({r['nfe']})")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows, path, n):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sdes = list(dict.fromkeys(r["sde"] for r in rows))
    fig, axes = plt.subplots(1, len(sdes), figsize=(3.6 * len(sdes), 3.4), sharey=True, squeeze=False)
    for ax, sde_name in zip(axes[0], sdes):
        groups = {}
        for r in rows:
            if r["sde"] == sde_name:
                key = r["setting"].rsplit(" ", 1)[0] if r["sampler"] != "ode" else " ".join(r["setting"].split()[:2])
                groups.setdefault(key, []).append(r)
        for key, rs in groups.items():
            rs = sorted(rs, key=lambda r: r["nfe"])
            ax.plot([r["nfe"] for r in rs], [min(r["ratio"], 5) for r in rs], "o-", label=key, ms=3)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(1.1, color="k", lw=0.6, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(sde_name)
        ax.set_xlabel("NFE")
    axes[0][0].set_ylabel(f"error / noise floor (N={n})")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
