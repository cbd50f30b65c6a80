"""The digit judge: a plain CNN trained on the 60k MNIST training digits that scores generated digits.

    python scripts/digit_judge.py train [--data ../shared/data] [--out outputs/judge/digit_judge.pt] [--epochs 3]
    python scripts/digit_judge.py score RUN/samples.npz [MORE.npz ...] [--ref 1000] [--train-set embedded|mnist]
                                        [--judge outputs/judge/digit_judge.pt] [--json out.json]

``score`` prints one row per file plus a reference row (``--ref`` real MNIST training digits that are
not among the 4,500 embedded training digits): Fréchet distance between the judge's 128-d
penultimate features of the digits and of the 10k MNIST test digits, confident share (top class
probability > 0.9), class balance (normalised entropy of the predicted-class histogram), and the
memorisation check: pixel-space L2 distance (pixels in [0, 1]) from each digit to its nearest
training digit (``--train-set embedded``: the 4,500 digits ``data=mnist_embedded`` trains on; ``mnist``:
the 60k), its minimum / 1st percentile / median, and the number of copies (distance < 1.0).
A samples.npz of ``sdegen sample`` holds ``images`` (N, H, W, C uint8) and ``x`` (N, C, H, W in [0, 1]);
``images`` is used when present.  The math is in ``sdegen.metrics.judge`` (tested in tests/test_judge.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sdegen.metrics import judge as J

REPO = Path(__file__).resolve().parents[1]

DEFAULT_JUDGE = REPO / "outputs" / "judge" / "digit_judge.pt"
DEFAULT_DATA = REPO.parent / "shared" / "data"


def cmd_train(args) -> None:
    start = time.time()
    images, labels = J.load_mnist(args.data, "train")
    test_images, test_labels = J.load_mnist(args.data, "test")
    x, y = J.to_unit_nchw(images), torch.from_numpy(labels)
    judge = J.train_judge(x, y, epochs=args.epochs, seed=args.seed)
    acc = J.accuracy(judge, J.to_unit_nchw(test_images), torch.from_numpy(test_labels))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(judge.state_dict(), out)
    print(f"test accuracy {acc:.4f} on 10,000 MNIST test digits; {time.time() - start:.0f} s; saved {out}")


def embedded_train_digits() -> np.ndarray:
    from sdegen.data.mnist import EmbeddedMNISTDataModule

    images, _ = EmbeddedMNISTDataModule().load_split("train")
    return np.asarray(images)


def load_samples(path: Path) -> torch.Tensor:
    with np.load(path) as f:
        arr = f["images"] if "images" in f else f["x"]
    return J.to_unit_nchw(arr)


def fmt(value, spec):
    return "–" if value is None else format(value, spec)


def cmd_score(args) -> None:
    judge = J.load_judge(args.judge)
    test_images, _ = J.load_mnist(args.data, "test")
    ref_stats = J.reference_stats(judge, test_images)
    train_images = J.load_mnist(args.data, "train")[0] if args.ref > 0 or args.train_set == "mnist" else None
    embedded = embedded_train_digits()
    train_set = embedded if args.train_set == "embedded" else train_images
    train_t = J.to_unit_nchw(train_set)

    rows = []
    if args.ref > 0:  # real training digits that the embedded set does not contain
        known = {img.tobytes() for img in embedded}
        fresh = np.array([i for i in range(len(train_images)) if train_images[i].tobytes() not in known])
        pick = np.random.default_rng(args.seed).choice(fresh, size=args.ref, replace=False)
        ref_x = J.to_unit_nchw(train_images[pick])
        # against the 60k the reference digits are themselves training digits, so compare with the embedded set
        ref_train = train_t if args.train_set == "embedded" else J.to_unit_nchw(embedded)
        rows.append((f"{args.ref} real MNIST training digits", J.judge_figures(judge, ref_x, ref_stats, ref_train)))
    for path in args.samples:
        x = load_samples(Path(path))
        rows.append((str(path), J.judge_figures(judge, x, ref_stats, train_t)))

    print(
        f"digit judge {args.judge}; Fréchet against the 10k MNIST test digits; "
        f"nearest neighbours in the {args.train_set} training set (L2, pixels in [0,1]; copy: < {J.COPY_THRESHOLD})"
    )
    print("| samples | n | Fréchet | confident | class balance | NN min | NN 1% | NN median | copies |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['n']} | {r['frechet']:.2f} | {r['confident']:.3f} | {r['balance']:.4f} | "
            f"{fmt(r.get('nn_min'), '.2f')} | {fmt(r.get('nn_p01'), '.2f')} | {fmt(r.get('nn_median'), '.2f')} | "
            f"{r.get('copies', '–')} |"
        )
    for name, r in rows:
        print(f"class counts {name}: {r['class_counts']}")
    if args.json:
        Path(args.json).write_text(json.dumps([{"samples": n, **r} for n, r in rows], indent=1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="train the judge CNN on the 60k MNIST training digits")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder with MNIST/raw (default ../shared/data)")
    p.add_argument("--out", default=str(DEFAULT_JUDGE))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("score", help="judge samples.npz files")
    p.add_argument("samples", nargs="*")
    p.add_argument("--judge", default=str(DEFAULT_JUDGE))
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--ref", type=int, default=1000, help="real training digits in the reference row (0: none)")
    p.add_argument("--train-set", choices=("embedded", "mnist"), default="embedded")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from sdegen.errors import UserError

    try:
        cmd_train(args) if args.cmd == "train" else cmd_score(args)
    except UserError as err:
        print(f"digit_judge: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
