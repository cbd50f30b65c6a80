"""``run_metrics``: the chosen metrics of a set of samples (and bits/dim of a model), as one dict.

* FID, KID, precision/recall (one pass of features; the reference features cached) and IS:
  ``eval.features`` = inception (images), raw (model-space coordinates; IS from the test bed's exact
  class posterior) or auto (``inputs.feature_kind``).
* gap (the Gaussian-mixture test bed only): the exact log-likelihood gap (``gap.log_likelihood_gap``,
  nats/dim, with ``gap_se``) against p(x), or for class-guided samples against each sample's p(x | y).
* ``eval.classifier_ckpt``: FID, KID and precision/recall in the time-dependent classifier's features at
  t = eps, its IS, and its accuracy on labelled samples (``classifier_domain_metrics``).
* ``eval.judge``: the digit judge's figures (``judge.judge_figures``), keys ``judge_*``.
* bits/dim: the probability-flow ODE on ``eval.bpd.n_points`` test points (``likelihood.bpd_of_batch``).
``ev`` is the ``eval`` config (a mapping); every function here is computation only (no files written).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from ..errors import UserError
from .inputs import FEATURE_METRICS, has_exact_density, reference_x, sample_labels, sample_pixels, samples_model_space

#: metric -> the metrics.json key that says it ran
RESULT_KEYS = {"fid": "fid", "kid": "kid_mean", "pr": "precision", "is": "is_mean", "bpd": "bpd", "gap": "gap"}
log = logging.getLogger("sdegen")


def run_metrics(
    wanted,
    data,
    samples: dict | None,
    pre: dict | None,
    ev,
    *,
    seed: int,
    batch_size: int,
    device,
    progress: bool = True,
    cache_folder=None,
    model=None,
) -> tuple[dict, dict]:
    """(metrics, per-point arrays of bits/dim or {}): the sample metrics of ``samples`` (with the
    prerequisites ``pre`` of ``inputs.prerequisites``) and, with ``"bpd" in wanted``, bits/dim of
    ``model`` = (score model, sde) on ``data``'s test points."""
    metrics: dict = {}
    sample_wanted = any(m in wanted for m in (*FEATURE_METRICS, "is"))
    if sample_wanted:
        metrics.update(
            sample_metrics(
                ev,
                data,
                samples,
                wanted,
                pre,
                seed=seed,
                batch_size=batch_size,
                device=device,
                progress=progress,
                cache_folder=cache_folder,
            )
        )
    if samples is not None and has_exact_density(data) and ("gap" in wanted or sample_wanted):
        metrics.update(gap_metrics(data, samples, seed))
    if ev.get("classifier_ckpt"):
        classifier, t = pre["classifier"]
        real = pre["reference"]
        if getattr(data, "is_image", False):
            real = data.scale(real.float() / 255)
        metrics.update(
            classifier_domain_metrics(
                classifier,
                data,
                samples,
                t=t,
                n_ref=int(ev["ref_size"]),
                split=str(ev["ref_split"]),
                seed=seed,
                batch_size=batch_size,
                splits=int(ev["is_splits"]),
                device=device,
                real=real,
                kid_subsets=int(ev["kid_subsets"]),
                kid_subset_size=ev["kid_subset_size"],
                pr_k=int(ev["pr_k"]),
            )
        )
    if ev.get("judge"):
        metrics.update(judge_metrics(data, samples, pre))
    per_point = {}
    if "bpd" in wanted:
        bpd, per_point = bpd_metrics(ev["bpd"], *model, data, seed=seed, device=device)
        metrics.update(bpd)
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise UserError(f"metric {bad[0]} is {metrics[bad[0]]} (NaN/inf): check the samples and the model")
    return metrics, per_point


def metrics_that_ran(metrics: dict) -> list[str]:
    return [m for m, key in RESULT_KEYS.items() if key in metrics]


def sample_metrics(
    ev,
    data,
    samples: dict,
    wanted,
    pre: dict,
    *,
    seed: int,
    batch_size: int,
    device,
    progress: bool = True,
    cache_folder=None,
) -> dict:
    """FID, KID, precision/recall (one pass of features; the reference features cached) and IS."""
    from . import fid_is
    from .features import RawFeatures, as_uint8_rgb
    from .sample_quality import cached_features, extract_features, feature_metrics, features_cache_file

    kind, bs, split = pre["kind"], batch_size, str(ev["ref_split"])
    if kind == "raw":
        fake = samples_model_space(data, samples).double()
        real = pre["reference"]
        if real.dtype == torch.uint8:  # raw features of images: both sets in model space
            real = data.scale(real.float() / 255)
        real = real.double()
        network, identity = RawFeatures(fake[0].numel()), {"network": "raw coordinates (model space)"}
    else:
        fake = as_uint8_rgb(sample_pixels(data, samples))
        real, network, identity = pre["reference"], pre.get("network"), pre.get("identity")
    out: dict = {
        "features": kind,
        "feature_network": identity,
        "reference": pre["reference_description"],
        "n_samples": int(fake.shape[0]),
        "n_reference": int(real.shape[0]),
    }
    if any(m in wanted for m in FEATURE_METRICS):
        cache = features_cache_file(
            cache_folder, f"{type(data).__name__}_{split}", identity, real, pre["reference_description"], tag=kind
        )
        if not cache.is_file() and kind == "inception":
            log.info(
                f"reference features of {real.shape[0]} images (once; about 3 images/s per CPU core), cached in {cache}"
            )
        real_features, _ = cached_features(network, real, cache, batch_size=bs, device=device, progress=progress)
        out.update(
            feature_metrics(
                network,
                None,
                fake,
                real_features=real_features,
                kid_subsets=int(ev["kid_subsets"]),
                kid_subset_size=ev["kid_subset_size"],
                k=int(ev["pr_k"]),
                is_splits=int(ev["is_splits"]),
                seed=seed,
                batch_size=bs,
                device=device,
                progress=progress,
            )
        )
        out["fid_reference"] = str(cache)
        if "is" not in wanted:
            out.pop("is_mean", None), out.pop("is_std", None)
    if "is" in wanted and "is_mean" not in out and "is" not in pre["skipped"]:
        if kind == "inception":  # IS only: one pass for the logits
            _, logits = extract_features(
                network, fake, batch_size=bs, device=device, progress=progress, desc="IS logits"
            )
            out["is_mean"], out["is_std"] = fid_is.inception_score_from_logits(
                logits, splits=int(ev["is_splits"]), seed=seed
            )
        elif getattr(data, "mixture", None) is not None:  # exact class posterior p(y|x) of the test bed
            mixture = data.mixture
            logits = fid_is.LogitsModule(lambda x: mixture.class_log_posterior(x))
            out["is_mean"], out["is_std"] = fid_is.inception_score(
                logits, fake, splits=int(ev["is_splits"]), batch_size=bs, device=device, seed=seed
            )
        else:
            pre["skipped"]["is"] = "raw features have no classes (use eval.features=inception or eval.classifier_ckpt)"
            log.info(f"IS skipped: {pre['skipped']['is']}")
    return out


def gap_metrics(data, samples: dict, seed: int) -> dict:
    """The exact log-likelihood gap (``gap.log_likelihood_gap``) of the samples, nats/dim, with its SE.

    Unlabelled samples are compared with the data mixture p(x).  Class-guided samples (``labels``, the
    mixture's component indices) are compared with their own class's component p(x | y): per class k the
    gap of its n_k samples against component k alone, combined with weights n_k / n (the same bed as
    ``scripts/bench_samplers.py --suite guided``)."""
    from .gap import log_likelihood_gap

    mixture = data.mixture
    x = samples_model_space(data, samples).double()
    labels = sample_labels(samples)
    if labels is None:
        gap = log_likelihood_gap(mixture, x, seed=seed)
        return {"gap": gap.gap, "gap_se": gap.se, "gap_target": "p(x), the data mixture"}
    if len(labels) != len(x):
        raise UserError(f"the samples have {len(x)} points but {len(labels)} labels")
    classes = sorted(set(labels.tolist()))
    if classes[0] < 0 or classes[-1] >= mixture.num_components:
        raise UserError(f"labels {classes} are not component indices of the {mixture.num_components}-component mixture")
    total, variance = 0.0, 0.0
    for k in classes:
        chosen = labels == k
        gap = log_likelihood_gap(mixture.component(k), x[chosen], seed=seed)
        share = float(chosen.double().mean())
        total += share * gap.gap
        variance += (share * gap.se) ** 2
    return {"gap": total, "gap_se": math.sqrt(variance), "gap_target": f"p(x | y), y = the samples' labels {classes}"}


def classifier_domain_metrics(
    classifier,
    data,
    samples: dict,
    *,
    t: float,
    n_ref: int,
    split: str = "test",
    seed: int = 0,
    batch_size: int = 250,
    splits: int = 10,
    device="cpu",
    real=None,
    kid_subsets: int = 100,
    kid_subset_size=1000,
    pr_k: int = 3,
) -> dict:
    """The offline domain metric: ``classifier_fid``, ``classifier_kid_mean/std``,
    ``classifier_precision/recall``, ``classifier_is_mean/std`` and, when the samples carry labels
    (class-guided generation), ``classifier_accuracy``.  Real and generated data are in model space
    (``data.scale``) when the classifier sees them; ``real`` defaults to ``n_ref`` points of ``split``."""
    from . import fid_is
    from .features import ClassifierFeatures
    from .sample_quality import feature_metrics

    classifier = classifier.to(device).eval()
    fake = samples_model_space(data, samples).float()
    real = (reference_x(data, n_ref, split, seed) if real is None else real).float()
    feats = ClassifierFeatures(classifier, float(t), "features")
    out = feature_metrics(
        feats,
        real,
        fake,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        k=pr_k,
        seed=seed,
        batch_size=batch_size,
        device=device,
        prefix="classifier_",
    )
    logits = ClassifierFeatures(classifier, float(t), "logits")
    out["classifier_is_mean"], out["classifier_is_std"] = fid_is.inception_score(
        logits, fake, splits=splits, batch_size=batch_size, device=device, seed=seed
    )
    labels = sample_labels(samples)
    if labels is not None:
        with torch.no_grad():
            pred = torch.cat([logits(b.to(device)).argmax(1).cpu() for b in fake.split(batch_size)])
        out["classifier_accuracy"] = float((pred == labels).double().mean())
    return out


def judge_metrics(data, samples: dict, pre: dict) -> dict:
    """The digit judge's figures of the samples (``judge.judge_figures``), keys prefixed ``judge_``."""
    from . import judge as J

    judge = pre["judge"]
    ref_stats = J.reference_stats(judge, pre["judge_test"])
    x = J.to_unit_nchw(sample_pixels(data, samples))
    fig = J.judge_figures(judge, x, ref_stats, J.to_unit_nchw(pre["judge_train"]))
    out = {
        f"judge_{k}": fig[k]
        for k in ("frechet", "confident", "balance", "is", "nn_min", "nn_p01", "nn_median", "copies", "class_counts")
    }
    out.update(judge_n=fig["n"], judge=pre["judge_description"], judge_copy_threshold=J.COPY_THRESHOLD)
    return out


def bpd_metrics(b, score_model, sde, data, *, seed: int, device, progress: bool = True) -> tuple[dict, dict]:
    """Bits/dim of ``b.n_points`` test points (``eval.bpd`` options ``b``): (metrics, per-point arrays
    ``x``, ``bpd``, ``bpd_se`` (Hutchinson standard error; 0: exact trace; NaN: one probe), ``logp``, ``nfe``)."""
    from tqdm.auto import tqdm

    from .likelihood import bits_per_dim_se, bpd_of_batch

    is_image = bool(getattr(data, "is_image", False))
    dtype = {"auto": torch.float32 if is_image else torch.float64, "float32": torch.float32, "float64": torch.float64}[
        str(b["dtype"])
    ]
    x = reference_x(data, int(b["n_points"]), str(b["split"]), int(seed) + 1)  # model space
    if is_image:
        x = data.unscale(x)  # pixels in [0, 1]: bpd_of_batch recovers the 8-bit values and dequantises
    g = torch.Generator(device=device).manual_seed(int(seed))
    solver = dict(
        trace=b["trace"],
        exact_max_dim=int(b["exact_max_dim"]),
        probe=b["probe"],
        n_probes=int(b["n_probes"]),
        method=b["method"],
        rtol=float(b["rtol"]),
        atol=float(b["atol"]),
        eps=b["eps"],
    )
    bpds, logps, ses, nfes = [], [], [], []
    for xb in tqdm(x.split(int(b["batch_size"])), desc="bits/dim (PF-ODE)", disable=not progress):
        bpd, res = bpd_of_batch(
            score_model,
            sde,
            xb.to(device),
            data=data if is_image else None,
            is_image=is_image,
            generator=g,
            dtype=dtype,
            **solver,
        )
        bpds.append(bpd.cpu()), logps.append(res.logp.cpu()), nfes.append(res.nfe)
        ses.append(bits_per_dim_se(res.logp_se, xb[0].numel()).cpu())
    bpd, logp, bpd_se = torch.cat(bpds).double(), torch.cat(logps).double(), torch.cat(ses).double()
    bad = int((~torch.isfinite(bpd)).sum())
    if bad:
        raise UserError(f"bits/dim: {bad} of {len(bpd)} points are NaN/inf (check the model or checkpoint)")
    per_point = {
        "x": x.cpu().numpy(),
        "bpd": bpd.numpy(),
        "bpd_se": bpd_se.numpy(),
        "logp": logp.numpy(),
        "nfe": np.asarray(nfes),
    }
    out = {
        "bpd": float(bpd.mean()),
        "bpd_std": float(bpd.std()),
        "bpd_sem": float(bpd.std() / math.sqrt(len(bpd))),
        "bpd_n": int(len(bpd)),
        "bpd_nfe": float(np.mean(nfes)),
        "bpd_n_probes": int(b["n_probes"]),
    }
    if bool(torch.isfinite(bpd_se).all()):  # n_probes=1 gives no SE (NaN): the key is left out, not NaN
        out["bpd_se_rms"] = float(bpd_se.pow(2).mean().sqrt())
    mixture = getattr(data, "mixture", None)
    if mixture is not None and not is_image:  # the test bed: the exact answer, for comparison
        out["bpd_exact"] = float(-mixture.log_prob(x).mean() / (x[0].numel() * math.log(2)))
    return out, per_point
