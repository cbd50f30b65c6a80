"""Sample-quality metrics from ONE pass of features: FID, KID, precision/recall (and IS from logits).

``feature_metrics(features_fn, real, fake)`` runs ``features_fn`` once over each set (in batches,
or takes ``real_features`` from the cache) and computes, in the same feature space:

* ``fid``: Fréchet distance of Gaussian fits (Heusel et al. 2017; torchmetrics) — biased upward
  at small n (≈ +k/n), comparable with published numbers only at the same n and reference;
* ``kid_mean`` / ``kid_std`` / ``kid_subset_size``: unbiased polynomial-kernel MMD² (``kid.py``);
* ``precision`` / ``recall``: k-NN manifolds, k = 3 (``precision_recall.py``);
* ``is_mean`` / ``is_std``: when the feature function also gives logits (``features_and_logits``).

``features_fn`` is any module mapping a batch to (N, F) features: the resolved Inception
(``inception.resolve_inception``), the project's classifier (``features.ClassifierFeatures``) or
``features.RawFeatures``.  Keys get ``prefix`` (e.g. ``classifier_``) so several spaces share one dict.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import fid_is
from .kid import kid
from .precision_recall import precision_recall


def extract_features(
    features_fn, x: torch.Tensor, *, batch_size: int = 250, device=None, progress: bool = False, desc: str = "features"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(features (N, F) float32 on CPU, logits or None): one pass of ``features_fn`` over ``x``.
    Uses ``features_fn.features_and_logits`` when it exists (Inception: pool3 and IS logits together)."""
    if device is not None and isinstance(features_fn, torch.nn.Module):
        features_fn.to(device)  # the network follows the batches (a no-op when already there)
    both = getattr(features_fn, "features_and_logits", None)
    feats, logits = [], []
    for i in tqdm(range(0, x.shape[0], batch_size), desc=desc, disable=not progress, leave=False):
        batch = x[i : i + batch_size]
        if device is not None:
            batch = batch.to(device)
        with torch.no_grad():
            f, lg = both(batch) if both is not None else (features_fn(batch), None)
        feats.append(f.reshape(f.shape[0], -1).float().cpu())
        if lg is not None:
            logits.append(lg.float().cpu())
    return torch.cat(feats), (torch.cat(logits) if logits else None)


def features_cache_file(
    cache_dir, name: str, identity: dict, reference: torch.Tensor, description: str, tag: str = "features"
) -> Path:
    """``<cache_dir>/<name>_<n>_<tag>_<hash>.pt`` (tag: e.g. inception, raw): the hash covers the feature
    network's identity (network, sha256, resize) and the reference images themselves, so stale features are
    never reused."""
    digest = hashlib.sha1(reference.cpu().contiguous().numpy().tobytes()).hexdigest()[:12]
    key = {"identity": identity, "reference_sha1": digest, "description": description}
    h = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{name.replace('/', '-')}_{reference.shape[0]}_{tag}_{h}.pt"


def cached_features(features_fn, x: torch.Tensor, cache_file=None, **kw) -> tuple[torch.Tensor, bool]:
    """Features of ``x`` (the reference set) from ``cache_file`` or computed (then saved). (features, cached)."""
    path = Path(cache_file) if cache_file else None
    if path is not None and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["features"].shape[0] == x.shape[0]:
            return state["features"], True
    feats, _ = extract_features(features_fn, x, desc="reference features", **kw)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"features": feats}, tmp)
        tmp.replace(path)
    return feats, False


def metrics_of_features(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    kid_subsets: int = 100,
    kid_subset_size: int | None = 1000,
    k: int = 3,
    seed: int = 0,
    prefix: str = "",
) -> dict:
    """FID, KID (mean, std, subset size) and precision/recall of two precomputed feature sets."""
    kid_mean, kid_std, size = kid(real, fake, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    precision, recall = precision_recall(real, fake, k=k)
    out = {
        "fid": fid_is.fid_from_features(real, fake),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "kid_subset_size": size,
        "precision": precision,
        "recall": recall,
        "pr_k": int(k),
        "n_samples": int(fake.shape[0]),
        "n_reference": int(real.shape[0]),
    }
    return {prefix + key: value for key, value in out.items()}


def feature_metrics(
    features_fn,
    real: torch.Tensor | None,
    fake: torch.Tensor,
    *,
    real_features=None,
    kid_subsets: int = 100,
    kid_subset_size: int | None = 1000,
    k: int = 3,
    is_splits: int = 10,
    seed: int = 0,
    batch_size: int = 250,
    device=None,
    progress: bool = False,
    prefix: str = "",
) -> dict:
    """FID, KID, precision/recall (and IS when ``features_fn`` gives logits) of ``fake`` against
    ``real`` (or its precomputed ``real_features``), each set passed once through ``features_fn``."""
    if real_features is None:
        real_features, _ = extract_features(
            features_fn, real, batch_size=batch_size, device=device, progress=progress, desc="reference features"
        )
    fake_features, logits = extract_features(
        features_fn, fake, batch_size=batch_size, device=device, progress=progress, desc="sample features"
    )
    out = metrics_of_features(
        real_features,
        fake_features,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        k=k,
        seed=seed,
        prefix=prefix,
    )
    if logits is not None:
        mean, std = fid_is.inception_score_from_logits(logits, splits=is_splits, seed=seed)
        out[prefix + "is_mean"], out[prefix + "is_std"] = mean, std
    return out
