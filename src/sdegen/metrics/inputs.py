"""What the metrics read: views of a samples dict (``runtime.samples_file``) and the prerequisites
(feature network, reference, digit judge) found before any sample is drawn.

A samples dict holds ``x`` (float, data space) and/or ``images`` (uint8 NHWC), and ``labels`` for
class-guided samples.  ``prerequisites`` is cheap (no sampling): a missing piece is a one-line
``UserError`` raised before the samples are drawn.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import UserError

#: the sample metrics; fid, kid and pr come from one pass of features (asking for one computes all three)
METRICS = ("fid", "kid", "pr", "is", "bpd", "gap")
FEATURE_METRICS = ("fid", "kid", "pr")
log = logging.getLogger("sdegen")


def named_metrics(metric) -> list[str]:
    """The names of ``metric=`` (a name, a comma-separated string or a list), as given."""
    if not isinstance(metric, (str, list, tuple)) and hasattr(metric, "__iter__"):
        metric = list(metric)  # an OmegaConf list
    return [str(m).strip() for m in (metric if isinstance(metric, (list, tuple)) else str(metric).split(","))]


def wanted_metrics(metric) -> list[str]:
    """The metrics ``metric=`` asks for (``all``: every one); an unknown name is a ``UserError``."""
    names = named_metrics(metric)
    if "all" in names:
        return list(METRICS)
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise UserError(f"metric={','.join(bad)} is not known; use fid, kid, pr, is, bpd, gap or all")
    return names


# --- views of the samples ----------------------------------------------------------------------------
def sample_pixels(data, samples: dict) -> torch.Tensor:
    """Images of a samples dict as uint8 NCHW (``images``, NHWC) or [0, 1] floats (``x``; model-space
    values outside [0, 1] are mapped back with ``data.unscale``)."""
    if "images" in samples:
        img = torch.as_tensor(samples["images"])
        if img.ndim == 3:
            img = img[:, None]
        nhwc = img.ndim == 4 and img.shape[-1] in (1, 3) and img.shape[1] not in (1, 3)
        return img.permute(0, 3, 1, 2) if nhwc else img
    x = torch.as_tensor(samples["x"]).float()
    return data.unscale(x) if float(x.min()) < 0 else x.clamp(0, 1)


def samples_model_space(data, samples: dict) -> torch.Tensor:
    """Samples as the score network / classifier sees them."""
    if getattr(data, "is_image", False):
        pix = sample_pixels(data, samples)
        pix = pix.float() / 255 if pix.dtype == torch.uint8 else pix
        return data.scale(pix[:, : data.shape[0]])
    return torch.as_tensor(samples["x"]).float()


def sample_labels(samples: dict):
    return torch.as_tensor(samples["labels"]).long().reshape(-1) if "labels" in samples else None


def reference_x(data, n: int, split: str, seed: int) -> torch.Tensor:
    """n real samples of ``split`` in model space (``data.reference``), a fixed subset for ``seed``."""
    g = torch.Generator().manual_seed(seed)
    ref = data.reference(n, split=split, generator=g)
    return torch.as_tensor(ref[0] if isinstance(ref, (tuple, list)) else ref)


def has_exact_density(data) -> bool:
    """The Gaussian-mixture test bed: samples have an exact log-density (``data.mixture.log_prob``)."""
    return getattr(data, "mixture", None) is not None and not getattr(data, "is_image", False)


def feature_kind(features: str, data) -> str:
    """``eval.features``: auto is inception for images and raw (model-space coordinates) otherwise."""
    kind = str(features)
    if kind == "auto":
        kind = "inception" if getattr(data, "is_image", False) else "raw"
    if kind not in ("inception", "raw"):
        raise UserError(f"eval.features={kind} is not known; use auto, inception or raw")
    return kind


def samples_needed(wanted, ev) -> dict:
    """What needs samples (``metric=fid``, ``eval.judge`` ...) -> the fewest it can be computed from
    (covariances, the k-th neighbour of precision/recall, one sample per IS split)."""
    need = {}
    family = [m for m in wanted if m in FEATURE_METRICS]
    if family:
        need[f"metric={family[0]}"] = max(2, int(ev["pr_k"]) + 1)
    if "is" in wanted:
        need["metric=is"] = max(2, int(ev["is_splits"]))
    if "gap" in wanted:
        need["metric=gap"] = 2
    if ev.get("classifier_ckpt"):
        need["eval.classifier_ckpt"] = max(2, int(ev["pr_k"]) + 1, int(ev["is_splits"]))
    if ev.get("judge"):
        need["eval.judge"] = 2
    return need


# --- prerequisites, before sampling ------------------------------------------------------------------
def prerequisites(ev, data, wanted, *, seed: int, explicit=(), classifier=None) -> dict:
    """Everything the sample metrics need except the samples (cheap): the feature network
    (``resolve_inception``), the reference images, the judge; ``classifier`` is the loaded
    ``eval.classifier_ckpt`` as (module, its time t = eps).  Logs which network and which reference are used."""
    from .inception import FIDELITY_URL, resolve_inception
    from .reference import reference_images

    kind = feature_kind(ev["features"], data)
    pre: dict = {"kind": kind, "skipped": {}}
    if ev.get("judge"):
        pre.update(judge_prerequisites(ev, data))
    family = any(m in wanted for m in FEATURE_METRICS)
    if kind == "inception" and (family or "is" in wanted):
        network, identity = resolve_inception(
            ev["inception_weights"],
            bool(ev["trust_torchscript"]),
            logits="is" in wanted,
            download=bool(ev["inception_download"]),
            announce=log.info,
        )
        if "is" in wanted and not identity["has_logits"]:
            reason = (
                f"the {identity['network']} has no logits (pool3 only); for IS download {FIDELITY_URL} and pass "
                f"eval.inception_weights=PATH, or eval.inception_download=true"
            )
            if "is" in explicit:
                raise UserError(f"metric=is: {reason}")
            pre["skipped"]["is"] = reason
            log.info(f"IS skipped: {reason}")
        pre.update(network=network, identity=identity)
    if family or "is" in wanted or classifier is not None:
        reference, description = reference_images(
            data, int(ev["ref_size"]), split=str(ev["ref_split"]), seed=int(seed), mnist_root=ev["mnist_root"]
        )
        log.info(f"reference: {description}")
        pre.update(reference=reference, reference_description=description)
    if classifier is not None:
        pre["classifier"] = classifier
    return pre


def judge_prerequisites(ev, data) -> dict:
    """``eval.judge``: the judge network (``weights_only`` load), the 10k MNIST test digits of
    ``eval.mnist_root`` and the data module's training digits."""
    from . import judge as J
    from .reference import load_mnist_test

    path = Path(str(ev["judge"])).expanduser()
    if not path.is_file():
        raise UserError(
            f"eval.judge={ev['judge']}: no such file; train the judge with `python scripts/digit_judge.py "
            f"train` (writes outputs/judge/digit_judge.pt), or drop eval.judge"
        )
    if not ev["mnist_root"]:
        raise UserError(
            "eval.judge needs eval.mnist_root (the judge's Fréchet is against the 10k MNIST test digits): "
            "give eval.mnist_root=../shared/data (a torchvision root holding MNIST/raw)"
        )
    shape = tuple(getattr(data, "shape", ()))
    if shape != (1, 28, 28) or not hasattr(data, "load_split"):
        raise UserError(
            f"eval.judge scores 28×28 single-channel digits, but the data ({type(data).__name__}) have "
            f"shape {shape}; use it with data=mnist_embedded or data=mnist, or drop eval.judge"
        )
    try:
        judge = J.load_judge(path)
    except UserError as err:
        raise UserError(f"eval.judge={ev['judge']}: {err}") from None
    test = load_mnist_test(ev["mnist_root"])
    train = data.load_split("train")[0]  # all training digits (data.limit only shortens a debug run's epochs)
    log.info(
        f"digit judge {path}: Fréchet against the {test.shape[0]:,} MNIST test digits of {ev['mnist_root']}, "
        f"nearest neighbours among the {len(train):,} training digits of {type(data).__name__}"
    )
    return {
        "judge": judge,
        "judge_test": test,
        "judge_train": train,
        "judge_description": f"{path}; Fréchet against {test.shape[0]:,} MNIST test digits ({ev['mnist_root']}); "
        f"nearest neighbours among {len(train):,} {type(data).__name__} training digits",
    }
