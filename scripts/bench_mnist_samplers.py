"""Samplers on trained MNIST checkpoints, scored by the digit judge (``sdegen.bench.mnist``).

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
import sys
from pathlib import Path

from sdegen.bench.mnist import run, settings_of
from sdegen.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="training run folders (or checkpoint files)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=None,
        help="matched | tune | SAMPLER[:key=value,...] (repeatable; default matched)",
    )
    parser.add_argument("--n", type=int, default=1000, help="samples per setting and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--judge", default=str(REPO / "outputs" / "judge" / "digit_judge.pt"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="DIR with DIR/MNIST/raw")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--budget-min", type=float, default=0.0)
    parser.add_argument("--jsonl", default=None)
    args = parser.parse_args(argv)

    run(
        args.runs,
        settings_of(args.sets or ["matched"]),
        judge=args.judge,
        data=args.data,
        n=args.n,
        seeds=args.seeds,
        device=args.device,
        batch=args.batch,
        budget_min=args.budget_min,
        jsonl=args.jsonl,
    )


if __name__ == "__main__":
    try:
        main()
    except UserError as err:
        sys.exit(f"bench_mnist_samplers: {err}")
