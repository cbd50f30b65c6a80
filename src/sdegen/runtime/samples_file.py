"""``samples.npz`` and ``metrics.json``: their keys (one name per concept), and the one place that writes,
reads and checks a samples file (``sdegen sample``, ``sdegen eval``, tests).

A samples file holds ``x`` (float (N, C, H, W) samples in data space) and, for image data, ``images``
(uint8 (N, H, W, C)); ``labels`` when the samples are class-guided.  Reading checks the keys, dtypes,
shapes, finiteness, the range against the data (``check_samples``) and the number of samples against
what each metric needs; every failure is one ``UserError`` line.  A file whose labels are stored as ``y``
reads as ``labels``; the imputed images of ``task=inpaint|colorize`` (``samples``) read as ``x``.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

#: keys of samples.npz -> meaning
SAMPLES_KEYS = {
    "x": "float32 (N, C, H, W): the samples in data space",
    "images": "uint8 (N, H, W, C): the samples as images (image data only)",
    "labels": "int64 (N,): class labels of class-guided samples (the test images' labels for task outputs)",
    "nfe": "score evaluations per sample",
    "nfe_total": "score evaluations over all batches",
    "nfe_per_batch": "int64 (batches,): score evaluations of each batch",
    "seconds": "wall time of sampling",
    # task=inpaint|colorize
    "samples": "float32 (N, C, H, W): the imputed images in data space",
    "originals": "float32 (N, C, H, W): the test images",
    "observed": "float32 (N, C, H, W): what the sampler saw (masked or grey)",
    "masks": "float32 (N, C, H, W): 1 where a pixel is known",
}
#: keys of samples files written by older versions -> the key they are read as
SAMPLES_KEY_ALIASES = {"y": "labels"}

#: keys of metrics.json (``sdegen eval``, ``sdegen sample``) -> meaning; ``classifier_<key>`` are the same
#: figures in the time-dependent classifier's feature space, ``compare/<sampler>/nfe`` the NFE of ``compare=``
METRICS_KEYS = {
    "metric": "the metrics that ran, comma-separated",
    "skipped": "metrics asked for (through metric=all) that did not run -> why",
    "ckpt": "the checkpoint evaluated",
    "samples": "the samples file evaluated",
    "nfe": "score evaluations per sample",
    "nfe_total": "score evaluations over all batches",
    "seconds": "wall time of the command (sdegen sample: of sampling)",
    "sampling_seconds": "wall time of sampling",
    "samples_per_second": "samples drawn per second",
    "features": "feature space of FID/KID/PR: inception or raw",
    "feature_network": "the feature network's identity",
    "reference": "the real data compared against",
    "fid_reference": "the cached reference features",
    "n_samples": "samples evaluated",
    "n_reference": "real samples of the reference",
    "fid": "Fréchet distance",
    "kid_mean": "kernel distance (unbiased MMD²)",
    "kid_std": "its std over subsets",
    "kid_subset_size": "KID subset size",
    "precision": "k-NN precision",
    "recall": "k-NN recall",
    "pr_k": "k of precision/recall",
    "is_mean": "Inception Score",
    "is_std": "its std over splits",
    "gap": "exact log-likelihood gap, nats/dim (test bed)",
    "gap_se": "its standard error",
    "gap_target": "the density the gap is taken against",
    "bpd": "bits/dim",
    "bpd_std": "its std over points",
    "bpd_sem": "standard error of the mean",
    "bpd_n": "points",
    "bpd_nfe": "ODE score evaluations per point",
    "bpd_n_probes": "Hutchinson probes",
    "bpd_se_rms": "root-mean-square per-point standard error",
    "bpd_exact": "exact bits/dim (test bed)",
    "judge": "the digit judge and its references",
    "judge_n": "samples judged",
    "judge_frechet": "Fréchet distance in the judge's features",
    "judge_confident": "share of confident digits",
    "judge_balance": "class balance",
    "judge_is": "IS in the judge's classes",
    "judge_nn_min": "nearest training digit, minimum",
    "judge_nn_p01": "nearest training digit, 1st percentile",
    "judge_nn_median": "nearest training digit, median",
    "judge_copies": "samples closer than the copy threshold",
    "judge_class_counts": "samples per judged class",
    "judge_copy_threshold": "the copy threshold",
}
CLASSIFIER_PREFIX = "classifier_"
#: figures of ``eval.classifier_ckpt``: ``classifier_<key>`` (``accuracy``: on labelled samples)
CLASSIFIER_KEYS = (
    "fid",
    "kid_mean",
    "kid_std",
    "kid_subset_size",
    "precision",
    "recall",
    "pr_k",
    "n_samples",
    "n_reference",
    "is_mean",
    "is_std",
    "accuracy",
)
#: ``task=inpaint|colorize`` samples: their imputed images are the samples
TASK_SAMPLES_KEY = "samples"
#: image samples given as floats may lie this far outside [0, 1] (data space) or the model's range
IMAGE_TOLERANCE = 0.5
#: non-image samples of a mixture may lie this many component stds beyond the component means
MIXTURE_RANGE_STDS = 20.0

log = logging.getLogger("sdegen")


def is_metrics_key(key: str) -> bool:
    """Whether ``key`` is a metrics.json key of the vocabulary."""
    if key in METRICS_KEYS:
        return True
    if key.startswith(CLASSIFIER_PREFIX):
        return key.removeprefix(CLASSIFIER_PREFIX) in CLASSIFIER_KEYS
    parts = key.split("/")
    return len(parts) == 3 and parts[0] == "compare" and parts[2] == "nfe"


# --- writing -----------------------------------------------------------------------------------------
def samples_arrays(gen, data, seconds: float) -> dict:
    """The arrays of a samples file from a ``runtime.generation.Generated`` (model space → data space)."""
    from .. import viz

    x = data.unscale(gen.x).float()
    arrays = {
        "x": x.numpy().astype(np.float32),
        "nfe": np.int64(round(gen.nfe)),
        "nfe_total": np.int64(gen.nfe_total),
        "nfe_per_batch": np.asarray(gen.nfe_per_batch, dtype=np.int64),
        "seconds": np.float64(seconds),
    }
    if gen.labels is not None:
        arrays["labels"] = gen.labels.numpy().astype(np.int64)
    if getattr(data, "is_image", False):
        arrays["images"] = viz.to_uint8_images(x)
    return arrays


def write_samples(path: Path, arrays: dict) -> Path:
    """``np.savez`` of the arrays; every key must be one of ``SAMPLES_KEYS``."""
    unknown = sorted(set(arrays) - set(SAMPLES_KEYS))
    if unknown:
        raise ValueError(f"samples file keys {unknown} are not in SAMPLES_KEYS")
    np.savez(path, **arrays)
    return Path(path)


def write_metrics(path: Path, metrics: dict) -> Path:
    Path(path).write_text(json.dumps(metrics, indent=2, default=str))
    return Path(path)


# --- reading -----------------------------------------------------------------------------------------
def read_samples(path) -> dict:
    """The arrays of a samples file, checked on their own (``check_samples`` checks them against the data)."""
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise UserError(f"samples={path} does not exist (give the samples.npz of `sdegen sample`)")
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise UserError(
            f"samples={path} is not a readable .npz file ({type(err).__name__}; corrupt, not a "
            f"samples.npz, or holding Python objects)"
        ) from None
    for old, new in SAMPLES_KEY_ALIASES.items():
        if old in arrays and new not in arrays:
            arrays[new] = arrays.pop(old)
    if "x" not in arrays and TASK_SAMPLES_KEY in arrays:
        arrays["x"] = arrays[TASK_SAMPLES_KEY]
    if "x" not in arrays and "images" not in arrays:
        raise UserError(f"samples={path} has neither 'x' nor 'images' (arrays: {sorted(arrays)})")
    if min(a.size for k, a in arrays.items() if k in ("x", "images")) == 0:
        raise UserError(f"samples={path} holds no samples")
    if "x" in arrays:
        x = arrays["x"]
        if x.dtype.kind != "f":
            raise UserError(
                f"samples={path}: x has dtype {x.dtype}; x holds float samples in data space, shape "
                f"(N, C, H, W) (uint8 images go in 'images', shape (N, H, W, C))"
            )
        if x.ndim != 4:
            raise UserError(f"samples={path}: x has shape {x.shape}; it must be (N, C, H, W)")
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(1).sum())
        if bad:
            raise UserError(f"samples={path}: {bad} of {len(x)} samples contain NaN/inf")
    if "images" in arrays:
        images = arrays["images"]
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise UserError(
                f"samples={path}: images has dtype {images.dtype} and shape {images.shape}; it must be "
                f"uint8 (N, H, W, C) or (N, H, W)"
            )
    n = len(arrays["x"] if "x" in arrays else arrays["images"])
    if "x" in arrays and "images" in arrays and len(arrays["images"]) != n:
        raise UserError(f"samples={path}: x has {n} samples but images {len(arrays['images'])}")
    if "labels" in arrays:
        labels = arrays["labels"]
        if labels.dtype.kind not in "iu" or labels.shape != (n,):
            raise UserError(
                f"samples={path}: labels have dtype {labels.dtype} and shape {labels.shape}; they must "
                f"be {n} integers (one per sample)"
            )
    return arrays


def count(samples: dict) -> int:
    return len(samples["x"] if "x" in samples else samples["images"])


def data_range(data) -> tuple[float, float] | None:
    """The values samples of ``data`` may take: images (floats) in [0, 1] or the model's range, with
    ``IMAGE_TOLERANCE``; a mixture's means ± ``MIXTURE_RANGE_STDS`` component stds; None: not known."""
    if getattr(data, "is_image", False):
        ends = [0.0, 1.0, *(float(v) for v in data.scale(torch.tensor([0.0, 1.0])))]
        return min(ends) - IMAGE_TOLERANCE, max(ends) + IMAGE_TOLERANCE
    mixture = getattr(data, "mixture", None)
    if mixture is not None:
        spread = MIXTURE_RANGE_STDS * mixture.stds
        return float((mixture.means - spread).min()), float((mixture.means + spread).max())
    return None


def check_samples(samples: dict, data, path, needs: dict | None = None) -> None:
    """The samples fit ``data`` (shape, range) and there are as many as each metric needs
    (``needs``: what needs them, e.g. ``metric=fid`` -> minimum count)."""
    shape = tuple(data.shape)
    x = samples.get("x")
    is_image = bool(getattr(data, "is_image", False))
    if x is not None and tuple(x.shape[1:]) != shape:
        raise UserError(
            f"samples={path} have shape {tuple(x.shape[1:])} but the data have {shape}; give the data they "
            f"were drawn from (data=...)"
        )
    if x is None and not is_image:
        raise UserError(f"samples={path} holds only images, but {type(data).__name__} is not image data; give 'x'")
    if x is not None and not (is_image and "images" in samples):  # the values the metrics read
        bounds = data_range(data)
        lo, hi = float(x.min()), float(x.max())
        if bounds is not None and (lo < bounds[0] or hi > bounds[1]):
            raise UserError(
                f"samples={path}: x spans [{lo:.4g}, {hi:.4g}], outside the range of "
                f"{type(data).__name__} samples [{bounds[0]:.4g}, {bounds[1]:.4g}]; x holds samples in "
                f"data space"
            )
    n = count(samples)
    for metric, least in (needs or {}).items():
        if n < least:
            raise UserError(f"samples={path} holds {n} sample{'s' * (n != 1)}; {metric} needs at least {least}")


def data_of_samples(cfg, path: Path):
    """The data module the samples were drawn with: ``data=`` given on the command line, else the
    sample run's ``config.yaml`` (written by ``sdegen sample``, with a checkpoint's data config)."""
    from omegaconf import OmegaConf

    from .checkpoints import find_checkpoint
    from .setup import build_data, cli_overrides

    if "data" in {k.split(".", 1)[0] for k in cli_overrides()}:
        return build_data(cfg.data)
    folder = Path(path).parent
    saved = folder / "config.yaml"
    if saved.is_file():
        stored = OmegaConf.load(saved)
        if "data" in stored:
            log.info(f"data config of the samples from {saved}")
            return build_data(stored.data)
    hydra_cfg = folder / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():
        stored = OmegaConf.load(hydra_cfg)
        if stored.get("ckpt"):
            _, checkpoint = find_checkpoint(stored.ckpt)
            return build_data(OmegaConf.create(checkpoint["sdegen"]["cfg"]["data"]))
        if "data" in stored:
            return build_data(stored.data)
    raise UserError(
        f"cannot tell which data {path} was drawn from (no config.yaml beside it); "
        f"give data=... (and its options) on the command line"
    )
