"""Samplers on trained MNIST checkpoints, scored by the digit judge (``scripts/bench_mnist_samplers.py``).

For every checkpoint × sampler setting × seed, ``run`` draws ``n`` samples exactly as
``sdegen sample ckpt=RUN sampler=NAME sampler.k=v n_samples=N seed=S`` does (same config files, same
guidance: a class-conditional network samples p(x) with labels drawn uniformly; same uint8 images), and
scores them with the digit judge (Fréchet distance of the judge's 128-d features against the 10k MNIST
test digits, confident share, class balance).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import yaml
from omegaconf import OmegaConf

from .. import samplers, viz
from ..errors import UserError
from ..metrics import judge as J
from ..runtime.config import group_config
from ..runtime.generation import generate
from ..runtime.setup import build_setup, guided_score


def _nfe_grid(name, steps_for):
    return [(name, {"steps": steps_for(nfe)}) for nfe in (10, 20, 50, 100, 1000)]


#: a 49-NFE restart setting for trained networks: EDM's grid, one coarse interval
RESTART_49 = {"steps": 12, "grid": "edm", "start_noise": 80, "end_noise": 0.002, "restarts": [[3, 4, 0.1, 1.0]]}

#: each sampler at NFE ≈ 10, 20, 50, 100, 1000 (denoise adds 1; heun/pc: 2 per step)
MATCHED = (
    _nfe_grid("em", lambda nfe: nfe - 1)
    + _nfe_grid("dpm_solver_sde", lambda nfe: nfe - 1)
    + [("dpm_solver", {"steps": 9})]  # the 10-NFE recipe (its step-count preset)
    + [("dpm_solver", {"steps": nfe - 1}) for nfe in (20, 50, 100)]
    + [("heun", {"steps": s}) for s in (5, 10, 24, 50, 500)]
    + [("pc", {"steps": s}) for s in (5, 10, 25, 50, 500)]
    + [("restart", RESTART_49)]
)

#: ≤ 50-NFE stochastic settings (the candidates for the trained-network default), written out in full so
#: that they are the settings measured in docs/samplers.md whatever the YAML defaults are
#: (dpm_solver_sde from T, ending at σ/α = 0.002)
SDE_49 = {"steps": 49, "start_noise": None, "end_noise": 0.002}
TUNE = (
    [("dpm_solver_sde", {**SDE_49, "end_noise": e}) for e in (0.002, 0.005, 0.01, 0.02, 0.05)]
    + [("dpm_solver_sde", {**SDE_49, "order": 1})]
    + [("dpm_solver_sde", {**SDE_49, "grid": g}) for g in ("edm", "uniform")]
    + [("dpm_solver_sde", {**SDE_49, "start_noise": 80})]
    + [("dpm_solver_sde", {**SDE_49, "s_noise": 1.02})]
    + [("dpm_solver_sde", {**SDE_49, "steps": s, "end_noise": 0.01}) for s in (29, 39)]
    + [("em", {"steps": 49, "grid": g, "end_noise": 0.01}) for g in ("logsnr", "edm", "uniform")]
    + [
        ("heun", {"steps": 24, "grid": g, "s_churn": c, "end_noise": 0.002})
        for g in ("edm", "logsnr")
        for c in (10, 30, 80)
    ]
    + [
        (
            "heun",
            {
                "steps": 24,
                "grid": "edm",
                "s_churn": c,
                "s_tmin": 0.05,
                "s_tmax": 50,
                "s_noise": 1.007,
                "end_noise": 0.002,
            },
        )
        for c in (40, 80)
    ]
    + [
        ("restart", {**RESTART_49, "restarts": [[3, 4, lo, hi]]})
        for lo, hi in ((0.05, 0.5), (0.1, 1.0), (0.2, 2.0), (0.3, 3.0), (0.5, 5.0))
    ]
    + [
        ("restart", {**RESTART_49, "restarts": [[2, 6, 0.1, 1.0]]}),
        ("restart", {**RESTART_49, "steps": 8, "restarts": [[4, 4, 0.1, 2.0]]}),
        ("restart", {**RESTART_49, "restarts": [[3, 2, 0.1, 1.0], [3, 2, 1.0, 5.0]]}),
    ]
    + [("pc", {"steps": 24, "grid": "logsnr", "snr": r, "end_noise": 0.01}) for r in (0.05, 0.1, 0.16)]
)


def parse_setting(text: str):
    """'em:steps=99,grid=logsnr' -> ('em', {'steps': 99, 'grid': 'logsnr'}) (values parsed as YAML)."""
    name, _, rest = text.partition(":")
    overrides = {}
    items, depth, current = [], 0, ""
    for char in rest + ",":  # split on the commas outside brackets and braces
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    for item in filter(None, items):
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    return name, overrides


def settings_of(names):
    out = []
    for name in names:
        out += MATCHED if name == "matched" else TUNE if name == "tune" else [parse_setting(name)]
    return out


def label(name: str, overrides: dict) -> str:
    return name + ("" if not overrides else " " + " ".join(f"{k}={v}" for k, v in overrides.items()))


def run(
    runs, settings, *, judge, data, n=1000, seeds=(1,), device="auto", batch=1000, budget_min=0.0, jsonl=None
) -> list[dict]:
    """Every setting × run × seed: prints a Markdown table row per result, appends it to ``jsonl`` (one JSON
    line each) and returns the rows.  Every setting is checked before any work; ``budget_min`` > 0 starts no
    new setting after that many minutes."""
    if torch.cuda.is_available():  # fp32 convolutions as on the CPU (cuDNN would use TF32)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    for name, overrides in settings:  # a typo fails at once
        samplers.build({**group_config("sampler", name), **overrides})
    if not Path(judge).is_file():
        raise UserError(
            f"no digit judge at {judge}: train it with `python scripts/digit_judge.py train` or pass --judge FILE"
        )
    judge_model = J.load_judge(judge)
    ref_stats = J.reference_stats(judge_model, J.load_mnist(data, "test")[0])
    start = time.time()
    print("| run | sampler | NFE | seed | n | Fréchet | confident | balance | seconds |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    loaded, rows = [], []
    for path in runs:
        setup = build_setup(OmegaConf.create({"ckpt": str(path), "device": device, "seed": 0}))
        loaded.append((path, setup, guided_score(OmegaConf.create({}), setup)))
    for name, overrides in settings:  # settings outside, runs inside: a budget stop leaves whole rows
        sampler_cfg = {**group_config("sampler", name), **overrides}
        for path, setup, score_fn in loaded:
            sampler = setup.sampler(sampler_cfg)
            for seed in seeds:
                if budget_min and time.time() - start > 60 * budget_min:
                    print(f"(budget of {budget_min} min reached: stopped at {label(name, overrides)})")
                    return rows
                tic = time.time()
                gen = generate(
                    setup, score_fn, sampler, n, batch_size=batch, generator=setup.generator(seed), progress=False
                )
                images = viz.to_uint8_images(setup.data.unscale(gen.x).float())
                fig = J.judge_figures(judge_model, J.to_unit_nchw(images), ref_stats)
                seconds = time.time() - tic
                row = {
                    "run": str(path),
                    "sampler": name,
                    "overrides": overrides,
                    "nfe": gen.nfe,
                    "seed": seed,
                    "n": n,
                    "frechet": fig["frechet"],
                    "confident": fig["confident"],
                    "balance": fig["balance"],
                    "seconds": seconds,
                }
                rows.append(row)
                print(
                    f"| {Path(path).name} | {label(name, overrides)} | {gen.nfe:g} | {seed} | {n} | "
                    f"{fig['frechet']:.2f} | {fig['confident']:.3f} | {fig['balance']:.3f} | {seconds:.0f} |",
                    flush=True,
                )
                if jsonl:
                    with open(jsonl, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
    return rows
