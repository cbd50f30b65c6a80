"""Training throughput: the Lightning training step of ``sdegen train`` against a plain PyTorch loop
with the same model, loss, batch, optimiser, gradient clipping, EMA and device.

    python scripts/bench_train.py [--steps 30] [--batch 64] [--models scorenet ncsnpp] [--device auto]
        [--precision 32-true bf16-mixed] [--channels-last] [--compile [--compile-mode default]] [--out table.md]

Prints, per model and variant (each ``--precision``, with the ``--channels-last``/``--compile`` options of
train.yaml), images/s of both, their ratio (target ≥ 0.9) and peak memory (CUDA: max allocated; CPU: peak
RSS of the process, cumulative, so only an upper bound for the later runs).  The plain loop applies the
same variant: torch.autocast (bf16/fp16; 16-mixed with a GradScaler), channels-last weights and batches,
``nn.Module.compile``.  The ``autocast``/``NHWC``/``compiled`` columns are what the network's forward saw
in each loop (the variant really ran).  ``--out FILE`` appends the table in Markdown.

    python scripts/bench_train.py --recipe "" --recipe "model.patch_size=1 model.channels=[16,32,64]" \
        --threads 1 2 [--steps 50]

times the plain loop of the scorenet for each recipe (space-separated config overrides) at each torch
thread count and prints ms per step: the per-step cost behind equal-cost recipe comparisons and the
``threads`` default.
"""

from __future__ import annotations

import argparse

import torch

from sdegen.bench.train import PRECISIONS, bench_recipes, print_table, run_variants


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["scorenet", "ncsnpp"])
    p.add_argument("--batch", type=int, default=None, help="default: 64 (scorenet), 16 on CPU / 128 on GPU (ncsnpp)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps (compile: the compilation)")
    p.add_argument("--device", default="auto")
    p.add_argument("--ncsnpp-nf", type=int, default=None, help="override model.nf (default: the config's; 32 on CPU)")
    p.add_argument(
        "--precision",
        nargs="+",
        default=["32-true"],
        choices=PRECISIONS,
        help="trainer.precision of each variant (the plain loop: torch.autocast)",
    )
    p.add_argument("--channels-last", action="store_true", help="channels_last=true (weights and batches NHWC)")
    p.add_argument("--compile", action="store_true", help="compile=true (torch.compile of the network)")
    p.add_argument("--compile-mode", default="default", help="compile_mode (default | reduce-overhead | max-autotune)")
    p.add_argument("--override", action="append", default=[], help="a config override for every model (repeat)")
    p.add_argument("--out", default=None, help="append the table (Markdown) to this file")
    p.add_argument(
        "--recipe",
        action="append",
        default=None,
        help="config overrides of one scorenet recipe (repeat); prints ms/step per recipe and thread count",
    )
    p.add_argument("--threads", type=int, nargs="+", default=None)
    args = p.parse_args()
    if args.recipe is not None:
        return bench_recipes(
            args.recipe, args.threads or [torch.get_num_threads()], args.batch or 64, args.steps, args.warmup
        )
    if args.threads:
        torch.set_num_threads(args.threads[0])
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    rows = run_variants(
        args.models,
        args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        compile_mode=args.compile_mode,
        batch=args.batch,
        steps=args.steps,
        warmup=args.warmup,
        device=device,
        ncsnpp_nf=args.ncsnpp_nf,
        overrides=args.override,
    )
    print_table(rows, device, args.out)


if __name__ == "__main__":
    main()
