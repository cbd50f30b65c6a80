"""Samplers on trained MNIST checkpoints, scored by the digit judge (issue 10, item 5).

    python scripts/bench_mnist_samplers.py RUN [RUN ...] [--set matched|tune|SAMPLER[:k=v,...]] [--n 1000]
                                           [--seeds 1] [--judge outputs/judge/digit_judge.pt]
                                           [--data ../shared/data] [--device auto] [--batch 1000]
                                           [--budget-min 0] [--jsonl results.jsonl]

For every checkpoint × sampler setting × seed it draws ``--n`` samples exactly as
``sdegen sample ckpt=RUN sampler=NAME sampler.k=v n_samples=N seed=S`` does (same config files, same
guidance: a class-conditional network samples p(x) with labels drawn uniformly; same uint8 images),
and scores them with the digit judge (Fréchet distance of the judge's 128-d features against the 10k
MNIST test digits, confident share, class balance).  Prints a Markdown table (NFE = network
evaluations per sample) and appends one JSON line per result to ``--jsonl``.

``--set matched``: each sampler at matched NFE ≈ 10, 20, 50, 100, 1000 (the README table);
``--set tune``: the ≤ 50-NFE stochastic settings the defaults were chosen from (docs/samplers.md);
``--set em:steps=99,grid=logsnr --set dpm_solver_sde`` (repeatable): given settings.
``--budget-min``: start no new setting after that many minutes (0: no limit); what ran is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from omegaconf import OmegaConf  # noqa: E402

from sdegen import samplers, viz  # noqa: E402
from sdegen.errors import UserError  # noqa: E402
from sdegen.metrics import judge as J  # noqa: E402
from sdegen.runtime.config import group_config  # noqa: E402
from sdegen.runtime.generation import generate  # noqa: E402
from sdegen.runtime.setup import build_setup, guided_score  # noqa: E402


def _nfe_grid(name, steps_for):
    return [(name, {"steps": steps_for(nfe)}) for nfe in (10, 20, 50, 100, 1000)]


#: the 49-NFE restart setting for trained networks (the previous default: EDM's grid, one coarse interval)
RESTART_49 = {"steps": 12, "grid": "edm", "start_noise": 80, "end_noise": 0.002, "restarts": [[3, 4, 0.1, 1.0]]}

#: each sampler at NFE ≈ 10, 20, 50, 100, 1000 (denoise adds 1; heun/pc: 2 per step)
MATCHED = (
    _nfe_grid("em", lambda nfe: nfe - 1)
    + _nfe_grid("dpm_solver_sde", lambda nfe: nfe - 1)
    + [("dpm_solver", {"steps": 9})]  # the 10-NFE recipe (by_steps)
    + [("dpm_solver", {"steps": nfe - 1}) for nfe in (20, 50, 100)]
    + [("heun", {"steps": s}) for s in (5, 10, 24, 50, 500)]
    + [("pc", {"steps": s}) for s in (5, 10, 25, 50, 500)]
    + [("restart", RESTART_49)]
)

#: ≤ 50-NFE stochastic settings (the candidates for the trained-network default), written out in full so
#: that they stay the settings measured in docs/samplers.md whatever the YAML defaults become
#: (dpm_solver_sde's YAML then started at T and ended at σ/α = 0.002)
SDE_THEN = {"steps": 49, "start_noise": None, "end_noise": 0.002}
TUNE = (
    [("dpm_solver_sde", {**SDE_THEN, "end_noise": e}) for e in (0.002, 0.005, 0.01, 0.02, 0.05)]
    + [("dpm_solver_sde", {**SDE_THEN, "order": 1})]
    + [("dpm_solver_sde", {**SDE_THEN, "grid": g}) for g in ("edm", "uniform")]
    + [("dpm_solver_sde", {**SDE_THEN, "start_noise": 80})]
    + [("dpm_solver_sde", {**SDE_THEN, "s_noise": 1.02})]
    + [("dpm_solver_sde", {**SDE_THEN, "steps": s, "end_noise": 0.01}) for s in (29, 39)]
    + [("em", {"steps": 49, "grid": g, "end_noise": 0.01}) for g in ("logsnr", "edm", "uniform")]
    + [("heun", {"steps": 24, "grid": g, "s_churn": c, "end_noise": 0.002})
       for g in ("edm", "logsnr") for c in (10, 30, 80)]
    + [("heun", {"steps": 24, "grid": "edm", "s_churn": c, "s_tmin": 0.05, "s_tmax": 50, "s_noise": 1.007,
                 "end_noise": 0.002}) for c in (40, 80)]
    + [("restart", {**RESTART_49, "restarts": [[3, 4, lo, hi]]}) for lo, hi in
       ((0.05, 0.5), (0.1, 1.0), (0.2, 2.0), (0.3, 3.0), (0.5, 5.0))]
    + [("restart", {**RESTART_49, "restarts": [[2, 6, 0.1, 1.0]]}),
       ("restart", {**RESTART_49, "steps": 8, "restarts": [[4, 4, 0.1, 2.0]]}),
       ("restart", {**RESTART_49, "restarts": [[3, 2, 0.1, 1.0], [3, 2, 1.0, 5.0]]})]
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="training run folders (or checkpoint files)")
    parser.add_argument("--set", dest="sets", action="append", default=None,
                        help="matched | tune | SAMPLER[:key=value,...] (repeatable; default matched)")
    parser.add_argument("--n", type=int, default=1000, help="samples per setting and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--judge", default=str(REPO / "outputs" / "judge" / "digit_judge.pt"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="DIR with DIR/MNIST/raw")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--budget-min", type=float, default=0.0)
    parser.add_argument("--jsonl", default=None)
    args = parser.parse_args(argv)

    if torch.cuda.is_available():  # fp32 convolutions as on the CPU (cuDNN would use TF32)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    if not Path(args.judge).is_file():
        raise UserError(f"no digit judge at {args.judge}: train it with `python scripts/digit_judge.py train` "
                        f"or pass --judge FILE")
    settings = settings_of(args.sets or ["matched"])
    for name, overrides in settings:  # every setting checked before any sampling (a typo fails at once)
        samplers.split_config({**group_config("sampler", name), **overrides})
    judge_model = J.load_judge(args.judge)
    ref_stats = J.reference_stats(judge_model, J.load_mnist(args.data, "test")[0])
    start = time.time()
    print("| run | sampler | NFE | seed | n | Fréchet | confident | balance | seconds |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    runs = []
    for run in args.runs:
        setup = build_setup(OmegaConf.create({"ckpt": run, "device": args.device, "seed": 0}))
        runs.append((run, setup, guided_score(OmegaConf.create({}), setup)))
    for name, overrides in settings:  # settings outside, runs inside: a budget stop leaves whole rows
        sampler_cfg = {**group_config("sampler", name), **overrides}
        for run, setup, score_fn in runs:
            for seed in args.seeds:
                if args.budget_min and time.time() - start > 60 * args.budget_min:
                    print(f"(budget of {args.budget_min} min reached: stopped before {label(name, overrides)})")
                    return
                tic = time.time()
                gen = generate(setup, score_fn, sampler_cfg, args.n, batch_size=args.batch,
                               generator=setup.generator(seed), progress=False)
                images = viz.to_uint8_images(setup.data.unscale(gen.x).float())
                fig = J.judge_figures(judge_model, J.to_unit_nchw(images), ref_stats)
                seconds = time.time() - tic
                row = {"run": str(run), "sampler": name, "overrides": overrides, "nfe": gen.nfe, "seed": seed,
                       "n": args.n, "frechet": fig["frechet"], "confident": fig["confident"],
                       "balance": fig["balance"], "seconds": seconds}
                print(f"| {Path(run).name} | {label(name, overrides)} | {gen.nfe:g} | {seed} | {args.n} | "
                      f"{fig['frechet']:.2f} | {fig['confident']:.3f} | {fig['balance']:.3f} | {seconds:.0f} |",
                      flush=True)
                if args.jsonl:
                    with open(args.jsonl, "a") as fh:
                        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    try:
        main()
    except UserError as err:
        sys.exit(f"bench_mnist_samplers: {err}")
