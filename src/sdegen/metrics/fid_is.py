"""FID and Inception Score through torchmetrics, with cached reference statistics.

FID (Heusel et al. 2017) = ||μ_r − μ_g||² + Tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^{1/2}) between Gaussians fit
to features of real and generated images: torchmetrics' ``FrechetInceptionDistance`` with any
feature module (see ``features.py``).  The real side (feature sum, sum of outer products, count:
torchmetrics' own state) is computed once per (data set, split, size, feature network) and cached
as a ``.pt`` file under ``$SDEGEN_CACHE/fid_ref/`` (``runtime.rundir.cache_dir``; or ``eval.cache_dir``).

IS (Salimans et al. 2016) = exp E_x KL(p(y|x) || p(y)), mean and std over ``splits`` splits:
torchmetrics' ``InceptionScore`` with a logits module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

REAL_STATE = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")


def _batches(x: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    for i in range(0, x.shape[0], batch_size):
        yield x[i : i + batch_size]


def make_fid(feature: nn.Module, device="cpu"):
    from torchmetrics.image.fid import FrechetInceptionDistance

    if not getattr(feature, "num_features", None):
        raise ValueError("the feature module needs num_features (see features.infer_num_features)")
    return FrechetInceptionDistance(feature=feature, reset_real_features=False).to(device)


def cache_key(dataset: str, split: str, n: int, feature_name: str, extra: dict | None = None) -> str:
    """File name of cached reference statistics: ``<dataset>_<split>_<n>_<features>[_<hash>].pt``."""
    key = f"{dataset}_{split}_{int(n)}_{feature_name}"
    if extra:
        key += "_" + hashlib.sha1(json.dumps(extra, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return key.replace("/", "-") + ".pt"


def update_fid(fid, x: torch.Tensor, *, real: bool, batch_size: int = 250, progress: bool = False, desc="features"):
    device = fid.real_features_sum.device
    for batch in tqdm(list(_batches(x, batch_size)), desc=desc, disable=not progress, leave=False):
        with torch.no_grad():
            fid.update(batch.to(device), real=real)


def load_or_compute_reference(fid, cache_file: str | Path | None, real_fn, *, batch_size=250, progress=False) -> bool:
    """Fill the real side of ``fid`` from ``cache_file`` or from ``real_fn()`` (then save). True if cached."""
    path = Path(cache_file) if cache_file else None
    if path is not None and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        dim = fid.real_features_sum.shape[0]
        if state["real_features_sum"].shape[0] == dim:
            for name in REAL_STATE:
                setattr(fid, name, state[name].to(getattr(fid, name).device))
            return True
    update_fid(fid, real_fn(), real=True, batch_size=batch_size, progress=progress, desc="reference features")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({name: getattr(fid, name).cpu() for name in REAL_STATE}, tmp)
        tmp.replace(path)
    return False


def frechet_distance(
    feature: nn.Module,
    real: torch.Tensor | None,
    fake: torch.Tensor,
    *,
    cache_file=None,
    real_fn=None,
    batch_size: int = 250,
    device="cpu",
    progress=False,
) -> float:
    """FID between ``real`` (or ``real_fn()``, cached in ``cache_file``) and ``fake`` in ``feature`` space."""
    fid = make_fid(feature, device)
    load_or_compute_reference(fid, cache_file, real_fn or (lambda: real), batch_size=batch_size, progress=progress)
    update_fid(fid, fake, real=False, batch_size=batch_size, progress=progress, desc="sample features")
    return float(fid.compute())


def inception_score(
    logits_module: nn.Module,
    x: torch.Tensor,
    *,
    splits: int = 10,
    batch_size: int = 250,
    device="cpu",
    seed: int = 0,
    progress=False,
) -> tuple[float, float]:
    """(mean, std over splits) of exp E KL(p(y|x) || p(y)) with p(y|x) = softmax(logits_module(x))."""
    import warnings

    from torchmetrics.image.inception import InceptionScore

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "saves all features in a buffer"
        metric = InceptionScore(feature=logits_module, splits=splits).to(device)
    for batch in tqdm(list(_batches(x, batch_size)), desc="IS logits", disable=not progress, leave=False):
        with torch.no_grad():
            metric.update(batch.to(device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # torchmetrics permutes the samples before splitting
        mean, std = metric.compute()
    return float(mean), float(std)


class LogitsModule(nn.Module):
    """Wrap a function x -> logits as a module (torchmetrics wants an nn.Module)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two precomputed feature sets (N, F) (torchmetrics' estimator, float64)."""
    from .features import RawFeatures

    real, fake = real.reshape(real.shape[0], -1).double(), fake.reshape(fake.shape[0], -1).double()
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in size: {real.shape[1]} vs {fake.shape[1]}")
    return frechet_distance(RawFeatures(real.shape[1]), real, fake, batch_size=max(1, real.shape[0]))


def inception_score_from_logits(logits: torch.Tensor, *, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """IS (mean, std over splits) of precomputed logits (torchmetrics' ``InceptionScore``)."""
    return inception_score(
        LogitsModule(lambda v: v), logits.float(), splits=splits, batch_size=max(1, len(logits)), seed=seed
    )
