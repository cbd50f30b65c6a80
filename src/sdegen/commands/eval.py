"""``sdegen eval metric=fid|kid|pr|is|bpd|gap|all``: metrics of a checkpoint, of the exact test bed or of a samples.npz.

* Samples: ``samples=PATH/samples.npz`` (from ``sdegen sample``), or ``n_samples`` drawn with
  the configured sampler from ``ckpt=PATH`` (or from ``model=gmm data=gmm``, no checkpoint).
* FID, KID, precision/recall (one pass of features) and IS: ``eval.features`` = inception (images;
  ``metrics.inception.resolve_inception``), raw (coordinates; non-image data, IS from the mixture's
  exact class posterior on the test bed) or auto.  Reference: ``metrics.reference.reference_images``
  (the full MNIST test split with ``eval.mnist_root``); its features are cached under
  ``$SDEGEN_CACHE/fid_ref`` (or ``eval.cache_dir``), keyed on the network's identity and the images.
* Everything a metric needs (feature network, reference images, classifier checkpoint) is found
  BEFORE sampling (``sample_metric_prerequisites``): a missing piece is a one-line ``UserError``.
* bits/dim: probability-flow ODE on ``eval.bpd.n_points`` test points (``metrics/likelihood.py``);
  ``eval.bpd.n_probes`` Hutchinson probes give each value's standard error; per-sample values
  (``bpd``, ``bpd_se``) in ``bpd_per_sample.npz``.
* ``eval.classifier_ckpt=PATH``: FID, KID and precision/recall in the time-dependent classifier's
  feature space at t = eps (same reference), its IS, and its accuracy on labelled (class-guided) samples.
* ``eval.judge=PATH`` (MNIST, with ``eval.mnist_root``): the digit judge's figures (``metrics/judge.py``,
  ``scripts/digit_judge.py``): ``judge_frechet`` against the 10k MNIST test digits (whatever
  ``eval.ref_size``), ``judge_confident``, ``judge_balance``, ``judge_is`` (IS in the judge's class
  space: exp(E KL(p(y|x) ‖ p(y)))), and the nearest-training-digit distances
  ``judge_nn_min``, ``judge_nn_median`` and ``judge_copies`` against the data module's training digits.
* gap (the Gaussian-mixture test bed only): the exact log-likelihood gap (``metrics.gap``, nats/dim, with
  ``gap_se``) against p(x), or for class-guided samples (labels ``y``) against each sample's p(x | y)
  (``gap_metrics``); computed with any sample metric there, refused by name elsewhere.
Writes ``metrics.json`` in the run folder and logs the numbers to the configured loggers (CSV/W&B).
The score model is built once (``runtime.setup.build_setup``), for generation and bits/dim; ``guidance=``
applies to the generated samples.  With ``task=classifier`` it evaluates a time-dependent classifier
instead (accuracy over noise levels).
"""

from __future__ import annotations

import json
import logging
import math
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from .. import viz
from ..errors import UserError
from ..runtime.checkpoints import find_checkpoint, load_classifier
from ..runtime.generation import check_finite, generate
from ..runtime.loggers import log_metrics
from ..runtime.rundir import cache_dir, run_dir as current_run_dir
from ..runtime.setup import Setup, build_data, build_setup, cli_overrides, guided_score
from ..training.classifier import accuracy_curve

METRICS = ("fid", "kid", "pr", "is", "bpd", "gap")
FEATURE_METRICS = ("fid", "kid", "pr")  # one pass of features gives all three
log = logging.getLogger("sdegen")


def wanted_metrics(metric) -> list[str]:
    if OmegaConf.is_list(metric):
        metric = list(metric)
    names = [str(m).strip() for m in (metric if isinstance(metric, (list, tuple)) else str(metric).split(","))]
    if "all" in names:
        return list(METRICS)
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise UserError(f"metric={','.join(bad)} is not known; use fid, kid, pr, is, bpd, gap or all")
    return names


def samples_data(cfg, samples_path: Path):
    """The data module the samples were drawn with: ``data=`` given on the command line, else the
    sample run's ``config.yaml`` (written by ``sdegen sample``, with a checkpoint's data config)."""
    if "data" in {k.split(".", 1)[0] for k in cli_overrides()}:
        return build_data(cfg.data)
    folder = samples_path.parent
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
    raise UserError(f"cannot tell which data {samples_path} was drawn from (no config.yaml beside it); "
                    f"give data=... (and its options) on the command line")


# --- samples ----------------------------------------------------------------------------------------
def load_samples(path: Path) -> dict:
    """The arrays of a ``samples.npz`` (``x`` and/or ``images``); a missing or corrupt file is a ``UserError``."""
    if not path.is_file():
        raise UserError(f"samples={path} does not exist (give the samples.npz of `sdegen sample`)")
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise UserError(f"samples={path} is not a readable .npz file ({type(err).__name__}; corrupt or not a samples.npz)") from None
    if "x" not in arrays and "samples" in arrays:  # task=inpaint / colorize outputs
        arrays["x"] = arrays["samples"]
    if "x" not in arrays and "images" not in arrays:
        raise UserError(f"samples={path} has neither 'x' nor 'images' (arrays: {sorted(arrays)})")
    if "x" in arrays:
        check_finite(torch.as_tensor(arrays["x"]), f"samples={path}")
    return arrays


def check_samples_fit(samples: dict, data, path) -> None:
    shape = tuple(data.shape)
    x = samples.get("x")
    if x is not None and tuple(x.shape[1:]) != shape:
        raise UserError(f"samples={path} have shape {tuple(x.shape[1:])} but the data have {shape}; give the data they "
                        f"were drawn from (data=...)")


def generate_samples(setup: Setup, score_fn, cfg) -> dict:
    """``n_samples`` drawn with the configured sampler (and guidance), in data space."""
    start = time.time()
    gen = generate(setup, score_fn, cfg.sampler, int(cfg.n_samples), batch_size=int(cfg.batch_size),
                   generator=setup.generator(), progress=bool(cfg.get("progress", True)))
    x = setup.data.unscale(gen.x).float()
    out = {"x": x.numpy(), "nfe": np.asarray(gen.nfe), "nfe_total": np.asarray(gen.nfe_total),
           "seconds": np.asarray(time.time() - start)}
    if gen.labels is not None:
        out["y"] = gen.labels.numpy()
    if getattr(setup.data, "is_image", False):
        from ..metrics.features import as_uint8_rgb

        out["images"] = as_uint8_rgb(x.clamp(0, 1)).permute(0, 2, 3, 1).numpy()[..., : x.shape[1]]
    return out


def sample_pixels(data, samples: dict) -> torch.Tensor:
    """Images of a samples dict as uint8 NCHW (``images``, NHWC) or [0, 1] floats (``x``; model-space
    values outside [0, 1] are mapped back with ``data.unscale``)."""
    if "images" in samples:
        img = torch.as_tensor(samples["images"])
        if img.ndim == 3:
            img = img[:, None]
        return img.permute(0, 3, 1, 2) if img.ndim == 4 and img.shape[-1] in (1, 3) and img.shape[1] not in (1, 3) else img
    x = torch.as_tensor(samples["x"]).float()
    return data.unscale(x) if float(x.min()) < 0 else x


def samples_model_space(data, samples: dict) -> torch.Tensor:
    """Samples as the score network / classifier sees them."""
    if getattr(data, "is_image", False):
        pix = sample_pixels(data, samples)
        pix = pix.float() / 255 if pix.dtype == torch.uint8 else pix
        return data.scale(pix[:, : data.shape[0]])
    return torch.as_tensor(samples["x"]).float()


def sample_labels(samples: dict):
    for key in ("y", "labels", "label"):
        if key in samples:
            return torch.as_tensor(samples[key]).long().reshape(-1)
    return None


# --- metrics ---------------------------------------------------------------------------------------
def reference_x(data, n: int, split: str, seed: int) -> torch.Tensor:
    """n real samples of ``split`` in model space (``data.reference``), a fixed subset for ``seed``."""
    g = torch.Generator().manual_seed(seed)
    ref = data.reference(n, split=split, generator=g)
    x = ref[0] if isinstance(ref, (tuple, list)) else ref
    return torch.as_tensor(x)


def feature_kind(cfg, data) -> str:
    """``eval.features``: auto is inception for images and raw (model-space coordinates) otherwise."""
    kind = str(cfg.eval.features)
    if kind == "auto":
        kind = "inception" if getattr(data, "is_image", False) else "raw"
    if kind not in ("inception", "raw"):
        raise UserError(f"eval.features={kind} is not known; use auto, inception or raw")
    return kind


def is_explicit(metric, name: str) -> bool:
    """Whether ``metric=`` names ``name`` itself (not through ``all``)."""
    if OmegaConf.is_list(metric):
        metric = list(metric)
    names = [str(m).strip() for m in (metric if isinstance(metric, (list, tuple)) else str(metric).split(","))]
    return name in names


def sample_metric_prerequisites(cfg, data, wanted) -> dict:
    """Everything the sample metrics need except the samples, checked BEFORE sampling (cheap): the
    feature network (``resolve_inception``), the reference images and the classifier checkpoint.
    Raises ``UserError`` saying how to fix it; logs which network and which reference are used."""
    from ..metrics.inception import FIDELITY_URL, resolve_inception
    from ..metrics.reference import reference_images

    ev = cfg.eval
    kind = feature_kind(cfg, data)
    pre: dict = {"kind": kind}
    if ev.get("judge"):
        pre.update(judge_prerequisites(cfg, data))
    family = any(m in wanted for m in FEATURE_METRICS)
    if kind == "inception" and (family or "is" in wanted):
        network, identity = resolve_inception(ev.inception_weights, bool(ev.trust_torchscript),
                                              logits="is" in wanted, download=bool(ev.inception_download),
                                              announce=log.info)
        if "is" in wanted and not identity["has_logits"]:
            reason = (f"the {identity['network']} has no logits (pool3 only); for IS download {FIDELITY_URL} and pass "
                      f"eval.inception_weights=PATH, or eval.inception_download=true")
            if is_explicit(cfg.get("metric", "all"), "is"):
                raise UserError(f"metric=is: {reason}")
            pre["is_skipped"] = reason
            log.info(f"IS skipped: {reason}")
        pre.update(network=network, identity=identity)
    if family or "is" in wanted or ev.classifier_ckpt:
        reference, description = reference_images(data, int(ev.ref_size), split=str(ev.ref_split),
                                                  seed=int(cfg.seed), mnist_root=ev.mnist_root)
        log.info(f"reference: {description}")
        pre.update(reference=reference, reference_description=description)
    if ev.classifier_ckpt:
        pre["classifier"] = load_classifier(ev.classifier_ckpt, map_location="cpu")
    return pre


def judge_prerequisites(cfg, data) -> dict:
    """``eval.judge``: the judge network (``weights_only`` load), the 10k MNIST test digits of
    ``eval.mnist_root`` and the data module's training digits, checked before sampling."""
    from ..metrics import judge as J
    from ..metrics.reference import load_mnist_test

    ev = cfg.eval
    path = Path(str(ev.judge)).expanduser()
    if not path.is_file():
        raise UserError(f"eval.judge={ev.judge}: no such file; train the judge with `python scripts/digit_judge.py "
                        f"train` (writes outputs/judge/digit_judge.pt), or drop eval.judge")
    if not ev.mnist_root:
        raise UserError("eval.judge needs eval.mnist_root (the judge's Fréchet is against the 10k MNIST test digits): "
                        "give eval.mnist_root=../shared/data (a torchvision root holding MNIST/raw)")
    shape = tuple(getattr(data, "shape", ()))
    if shape != (1, 28, 28) or not hasattr(data, "load_split"):
        raise UserError(f"eval.judge scores 28×28 single-channel digits, but the data ({type(data).__name__}) have shape "
                        f"{shape}; use it with data=mnist_embedded or data=mnist, or drop eval.judge")
    try:
        judge = J.load_judge(path)
    except UserError as err:
        raise UserError(f"eval.judge={ev.judge}: {err}") from None
    test = load_mnist_test(ev.mnist_root)
    train = data.load_split("train")[0]  # all training digits (data.limit only shortens a debug run's epochs)
    log.info(f"digit judge {path}: Fréchet against the {test.shape[0]:,} MNIST test digits of {ev.mnist_root}, "
             f"nearest neighbours among the {len(train):,} training digits of {type(data).__name__}")
    return {"judge": judge, "judge_test": test, "judge_train": train,
            "judge_description": f"{path}; Fréchet against {test.shape[0]:,} MNIST test digits ({ev.mnist_root}); "
                                 f"nearest neighbours among {len(train):,} {type(data).__name__} training digits"}


def judge_metrics(data, samples: dict, pre: dict) -> dict:
    """The digit judge's figures of the samples (``judge_figures``), keys prefixed ``judge_``."""
    from ..metrics import judge as J

    judge = pre["judge"]
    ref_stats = J.reference_stats(judge, pre["judge_test"])
    x = J.to_unit_nchw(sample_pixels(data, samples))
    fig = J.judge_figures(judge, x, ref_stats, J.to_unit_nchw(pre["judge_train"]))
    out = {f"judge_{k}": fig[k] for k in ("frechet", "confident", "balance", "is", "nn_min", "nn_p01", "nn_median",
                                          "copies", "class_counts")}
    out.update(judge_n=fig["n"], judge=pre["judge_description"], judge_copy_threshold=J.COPY_THRESHOLD)
    return out


def sample_metrics(cfg, data, samples: dict, wanted, pre: dict, device) -> dict:
    """FID, KID, precision/recall (one pass of features; the reference features cached) and IS."""
    from ..metrics import fid_is
    from ..metrics.features import RawFeatures, as_uint8_rgb
    from ..metrics.sample_quality import cached_features, extract_features, feature_metrics, features_cache_file

    ev = cfg.eval
    kind, bs, split = pre["kind"], int(cfg.batch_size), str(ev.ref_split)
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
    out: dict = {"features": kind, "feature_network": identity, "reference": pre["reference_description"],
                 "n_samples": int(fake.shape[0]), "n_reference": int(real.shape[0])}
    progress = bool(cfg.get("progress", True))
    if any(m in wanted for m in FEATURE_METRICS):
        folder = Path(str(ev.cache_dir)).expanduser() if ev.cache_dir else cache_dir("fid_ref")
        cache = features_cache_file(folder, f"{type(data).__name__}_{split}", identity, real,
                                    pre["reference_description"], tag=kind)
        if not cache.is_file() and kind == "inception":
            log.info(f"reference features of {real.shape[0]} images (once; about 3 images/s per CPU core), "
                     f"cached in {cache}")
        real_features, _ = cached_features(network, real, cache, batch_size=bs, device=device, progress=progress)
        out.update(feature_metrics(network, None, fake, real_features=real_features, kid_subsets=int(ev.kid_subsets),
                                   kid_subset_size=ev.kid_subset_size, k=int(ev.pr_k), is_splits=int(ev.is_splits),
                                   seed=int(cfg.seed), batch_size=bs, device=device, progress=progress))
        out["fid_reference"] = str(cache)
        if "is" not in wanted:
            out.pop("is_mean", None), out.pop("is_std", None)
    if "is" in wanted and "is_mean" not in out:
        if pre.get("is_skipped"):
            out["is_skipped"] = pre["is_skipped"]
        elif kind == "inception":  # IS only: one pass for the logits
            _, logits = extract_features(network, fake, batch_size=bs, device=device, progress=progress,
                                         desc="IS logits")
            out["is_mean"], out["is_std"] = fid_is.inception_score_from_logits(logits, splits=int(ev.is_splits),
                                                                               seed=int(cfg.seed))
        elif getattr(data, "mixture", None) is not None:  # exact class posterior p(y|x) of the test bed
            mixture = data.mixture
            logits = fid_is.LogitsModule(lambda x: mixture.class_log_posterior(x))
            out["is_mean"], out["is_std"] = fid_is.inception_score(logits, fake, splits=int(ev.is_splits),
                                                                   batch_size=bs, device=device, seed=int(cfg.seed))
        else:
            out["is_skipped"] = "raw features have no classes (use eval.features=inception or eval.classifier_ckpt)"
            log.info(f"IS skipped: {out['is_skipped']}")
    return out


def has_exact_density(data) -> bool:
    """The Gaussian-mixture test bed: samples have an exact log-density (``data.mixture.log_prob``)."""
    return getattr(data, "mixture", None) is not None and not getattr(data, "is_image", False)


def gap_metrics(data, samples: dict, seed: int) -> dict:
    """The exact log-likelihood gap (``metrics.gap``) of the samples, nats/dim, with its standard error.

    Unlabelled samples are compared with the data mixture p(x).  Class-guided samples (labels ``y``, the
    mixture's component indices) are compared with their own class's component p(x | y): per class k the
    gap of its n_k samples against component k alone, combined with weights n_k / n (the same bed as
    ``scripts/bench_samplers.py --suite guided``)."""
    from ..metrics.gap import log_likelihood_gap

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


def classifier_metrics(cfg, data, samples: dict, pre: dict, device) -> dict:
    """``eval.classifier_ckpt``: the domain metrics of ``classifier_domain_metrics`` against the same
    reference as the Inception metrics (mapped to model space)."""
    ev = cfg.eval
    classifier, plain = pre["classifier"]
    real = pre["reference"]
    if getattr(data, "is_image", False):
        real = data.scale(real.float() / 255)
    return classifier_domain_metrics(classifier, data, samples, t=_eps_of(plain, cfg), n_ref=int(ev.ref_size),
                                     split=str(ev.ref_split), seed=int(cfg.seed), batch_size=int(cfg.batch_size),
                                     splits=int(ev.is_splits), device=device, real=real,
                                     kid_subsets=int(ev.kid_subsets), kid_subset_size=ev.kid_subset_size,
                                     pr_k=int(ev.pr_k))


def _eps_of(plain, cfg) -> float:
    try:
        return float(plain["sde"]["eps"])
    except (KeyError, TypeError):
        return float(cfg.sde.eps)


def classifier_domain_metrics(classifier, data, samples: dict, *, t: float, n_ref: int, split: str = "test",
                              seed: int = 0, batch_size: int = 250, splits: int = 10, device="cpu", real=None,
                              kid_subsets: int = 100, kid_subset_size=1000, pr_k: int = 3) -> dict:
    """The offline domain metric: ``classifier_fid``, ``classifier_kid_mean/std``,
    ``classifier_precision/recall``, ``classifier_is_mean/std`` and, when the samples carry labels
    (class-guided generation), ``classifier_accuracy``.  Real and generated data are in model space
    (``data.scale``) when the classifier sees them; ``real`` defaults to ``n_ref`` points of ``split``."""
    from ..metrics import fid_is
    from ..metrics.features import ClassifierFeatures
    from ..metrics.sample_quality import feature_metrics

    classifier = classifier.to(device).eval()
    fake = samples_model_space(data, samples).float()
    real = (reference_x(data, n_ref, split, seed) if real is None else real).float()
    feats = ClassifierFeatures(classifier, t, "features")
    out = feature_metrics(feats, real, fake, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, k=pr_k,
                          seed=seed, batch_size=batch_size, device=device, prefix="classifier_")
    logits = ClassifierFeatures(classifier, t, "logits")
    out["classifier_is_mean"], out["classifier_is_std"] = fid_is.inception_score(
        logits, fake, splits=splits, batch_size=batch_size, device=device, seed=seed)
    labels = sample_labels(samples)
    if labels is not None:
        with torch.no_grad():
            pred = torch.cat([logits(b.to(device)).argmax(1).cpu() for b in fake.split(batch_size)])
        out["classifier_accuracy"] = float((pred == labels).double().mean())
    return out


def bpd_metrics(cfg, setup: Setup, run_dir: Path) -> dict:
    from ..metrics.likelihood import bits_per_dim_se, bpd_of_batch

    b = cfg.eval.bpd
    is_image = bool(getattr(setup.data, "is_image", False))
    dtype = {"auto": torch.float32 if is_image else torch.float64, "float32": torch.float32,
             "float64": torch.float64}[str(b.dtype)]
    x = reference_x(setup.data, int(b.n_points), str(b.split), int(cfg.seed) + 1)  # model space
    if is_image:
        x = setup.data.unscale(x)  # pixels in [0, 1]: bpd_of_batch recovers the 8-bit values and dequantises
    g = torch.Generator(device=setup.device).manual_seed(int(cfg.seed))
    solver = dict(trace=b.trace, exact_max_dim=int(b.exact_max_dim), probe=b.probe, n_probes=int(b.n_probes),
                  method=b.method, rtol=float(b.rtol), atol=float(b.atol), eps=b.eps)
    bpds, logps, ses, nfes = [], [], [], []
    from tqdm.auto import tqdm

    for xb in tqdm(x.split(int(b.batch_size)), desc="bits/dim (PF-ODE)"):
        bpd, res = bpd_of_batch(setup.score_model, setup.sde, xb.to(setup.device), data=setup.data if is_image else None,
                                is_image=is_image,
                                generator=g, dtype=dtype, **solver)
        bpds.append(bpd.cpu()), logps.append(res.logp.cpu()), nfes.append(res.nfe)
        ses.append(bits_per_dim_se(res.logp_se, xb[0].numel()).cpu())
    bpd, logp, bpd_se = torch.cat(bpds).double(), torch.cat(logps).double(), torch.cat(ses).double()
    check_finite(bpd[:, None], "bits/dim")
    # bpd_se: per-image standard error of the Hutchinson estimate (0: exact trace; NaN: n_probes=1)
    np.savez(run_dir / "bpd_per_sample.npz", x=x.cpu().numpy(), bpd=bpd.numpy(), bpd_se=bpd_se.numpy(),
             logp=logp.numpy(), nfe=np.asarray(nfes))
    out = {"bpd": float(bpd.mean()), "bpd_std": float(bpd.std()), "bpd_sem": float(bpd.std() / math.sqrt(len(bpd))),
           "bpd_n": int(len(bpd)), "bpd_nfe": float(np.mean(nfes)), "bpd_n_probes": int(b.n_probes)}
    if bool(torch.isfinite(bpd_se).all()):  # n_probes=1 gives no SE (NaN): the key is left out, not NaN
        out["bpd_se_rms"] = float(bpd_se.pow(2).mean().sqrt())
    mixture = getattr(setup.data, "mixture", None)
    if mixture is not None and not is_image:  # the test bed: the exact answer, for comparison
        out["bpd_exact"] = float(-mixture.log_prob(x).mean() / (x[0].numel() * math.log(2)))
    return out


# --- the command -----------------------------------------------------------------------------------
def check_gap_wanted(cfg, data) -> None:
    """``metric=gap`` names the exact test bed; without it (``all``) the gap is simply not computed."""
    if is_explicit(cfg.get("metric", "all"), "gap") and not has_exact_density(data):
        raise UserError(f"metric=gap needs samples of the Gaussian-mixture test bed (data=gmm), whose log-density is "
                        f"exact; {type(data).__name__} has none (use fid, kid, pr, is or bpd)")


def check_metric_options(cfg) -> None:
    """The ranges of the sample-metric and bits/dim options (the rest: ``runtime.config.check_config``)."""
    for key, low, optional in (("eval.kid_subsets", 1, False), ("eval.kid_subset_size", 2, True), ("eval.pr_k", 1, False),
                               ("eval.bpd.n_probes", 1, False)):
        value = OmegaConf.select(cfg, key, default=None)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{key} must be an integer >= {low}, got {value!r}")


def evaluate(cfg) -> dict:
    """Compute the requested metrics; returns the metrics dict (also written to metrics.json).
    The score model is built once (for generation and bits/dim); ``samples=`` needs none."""
    torch.manual_seed(int(cfg.seed))
    wanted = wanted_metrics(cfg.get("metric", "all"))
    check_metric_options(cfg)
    samples_path = cfg.get("samples")
    guidance = str((cfg.get("guidance") or {}).get("name", "none"))
    if samples_path and guidance != "none":
        raise UserError(f"guidance={guidance} applies when eval draws the samples; samples= are already drawn "
                        f"(drop guidance=, or drop samples= to generate guided samples)")
    out = current_run_dir(cfg)
    t0 = time.time()
    metrics: dict = {"metric": ",".join(wanted), "ckpt": cfg.get("ckpt"), "samples": samples_path}
    sample_wanted = [m for m in wanted if m in (*FEATURE_METRICS, "is")]
    need_samples = (bool(sample_wanted) or "gap" in wanted or bool(cfg.eval.classifier_ckpt)
                    or bool(cfg.eval.get("judge")))

    setup = build_setup(cfg) if ("bpd" in wanted or not samples_path) else None
    device = setup.device if setup is not None else torch.device("cpu")
    samples = data = pre = None
    if need_samples and samples_path:
        samples = load_samples(Path(samples_path))
        data = samples_data(cfg, Path(samples_path))
        check_samples_fit(samples, data, samples_path)
        check_gap_wanted(cfg, data)
        pre = sample_metric_prerequisites(cfg, data, wanted)
    elif need_samples:
        check_gap_wanted(cfg, setup.data)
        pre = sample_metric_prerequisites(cfg, setup.data, wanted)  # fail fast: network, reference, classifier
        samples, data = generate_samples(setup, guided_score(cfg, setup), cfg), setup.data
        metrics["sampler_nfe"], metrics["sampler_nfe_total"] = float(samples["nfe"]), int(samples["nfe_total"])
        metrics["sampling_seconds"] = float(samples["seconds"])

    if sample_wanted:
        metrics.update(sample_metrics(cfg, data, samples, wanted, pre, device))
    if samples is not None and has_exact_density(data) and ("gap" in wanted or sample_wanted):
        metrics.update(gap_metrics(data, samples, int(cfg.seed)))
    if cfg.eval.classifier_ckpt:
        metrics.update(classifier_metrics(cfg, data, samples, pre, device))
    if cfg.eval.get("judge"):
        metrics.update(judge_metrics(data, samples, pre))
    out.mkdir(parents=True, exist_ok=True)
    if "bpd" in wanted:
        metrics.update(bpd_metrics(cfg, setup, out))
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise UserError(f"metric {bad[0]} is {metrics[bad[0]]} (NaN/inf): check the samples and the model")
    metrics["seconds"] = time.time() - t0
    if samples is not None and not samples_path:
        np.savez(out / "samples.npz", **samples)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    log_metrics(cfg, out, metrics, prefix="eval/")
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()
             if k in ("fid", "kid_mean", "kid_std", "precision", "recall", "is_mean", "is_std", "bpd", "bpd_se_rms",
                      "bpd_exact", "bpd_nfe", "gap", "gap_se", "classifier_fid", "classifier_kid_mean", "classifier_accuracy",
                      "judge_frechet", "judge_confident", "judge_balance", "judge_is", "judge_nn_min", "judge_nn_median",
                      "judge_copies")}
    log.info(f"{shown} -> {out / 'metrics.json'}")
    return metrics


def evaluate_classifier(cfg) -> dict:
    """``sdegen eval task=classifier ckpt=PATH``: test accuracy over a grid of noise levels."""
    from ..runtime.config import build_sde
    from ..runtime.device import resolve_device

    if not cfg.get("ckpt"):
        raise UserError("`sdegen eval task=classifier` needs ckpt=PATH (a `sdegen train task=classifier` checkpoint)")
    device = resolve_device(cfg.get("device", "auto"))
    model, plain = load_classifier(cfg.ckpt, map_location=device)
    stored = OmegaConf.create({k: v for k, v in plain.items() if k != "data_info"})
    sde, data = build_sde(stored), build_data(stored.data)
    ev = cfg.task.get("eval") or {}
    split = str(ev.get("split", "test"))
    x, y = data.reference(int(ev.get("n_points", 2000)), split=split, generator=torch.Generator().manual_seed(0))
    t_min = plain["task"].get("t_min")
    t_min = float(sde.eps if t_min is None else t_min)
    times = np.linspace(t_min, sde.T, int(ev.get("n_times", 11))).tolist()
    accuracies = accuracy_curve(model, sde, x.float(), torch.as_tensor(y).long(), times,
                                batch_size=int(cfg.batch_size), device=device)
    log_snr = [float(sde.log_snr(torch.tensor(t, dtype=torch.float64))) for t in times]
    result = {"mean_accuracy": float(np.mean(accuracies)), "times": times, "accuracy": accuracies, "log_snr": log_snr,
              "n": int(x.shape[0]), "split": split, "sde": plain["sde"].get("_target_"), "ckpt": str(cfg.ckpt)}
    out = current_run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classifier_accuracy.json").write_text(json.dumps(result, indent=2))
    _plot_curve(result, out / "classifier_accuracy.png")
    log.info(f"classifier accuracy (mean over {len(times)} noise levels): {result['mean_accuracy']:.3f}; "
             + ", ".join(f"t={t:.2f}: {a:.3f}" for t, a in zip(times, accuracies)) + f" -> {out}")
    return result


def _plot_curve(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(result["times"], result["accuracy"], "o-")
    ax.set_xlabel("t")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    viz._save_figure(fig, path, title=f"time-dependent classifier (mean {result['mean_accuracy']:.3f})")


def main(cfg):
    if str((cfg.get("task") or {}).get("name", "generate")) == "classifier":
        return evaluate_classifier(cfg)
    return evaluate(cfg)
