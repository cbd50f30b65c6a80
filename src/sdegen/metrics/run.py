"""``sdegen eval metric=fid|is|bpd|all``: metrics of a checkpoint, of the exact test bed or of a samples.npz.

* Samples: ``samples=PATH/samples.npz`` (from ``sdegen sample``), or ``eval.n_samples`` drawn with
  the configured sampler from ``ckpt=PATH`` (or from ``model=gmm data=gmm``, no checkpoint).
* FID / IS: ``eval.features`` = inception (images; torchmetrics), raw (coordinates; non-image data,
  IS from the mixture's exact class posterior on the test bed) or auto.  Reference statistics of
  the real split are cached under ``eval.cache_dir``.
* bits/dim: probability-flow ODE on ``eval.bpd.n`` test points (``metrics/likelihood.py``);
  per-sample values in ``bpd_per_sample.npz``.
* ``eval.classifier_ckpt=PATH``: FID in the time-dependent classifier's feature space at t = eps,
  its IS, and its accuracy on labelled (class-guided) samples.
Writes ``metrics.json`` in the run folder and logs the numbers to the configured loggers (CSV/W&B).
With ``task=classifier`` it evaluates a classifier instead (``sdegen.training.classifier.evaluate``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

METRICS = ("fid", "is", "bpd")


@dataclass
class Context:
    score_fn: object  # nn.Module: (x, t, y=None) -> score
    sde: object
    data: object
    device: torch.device


def log(msg: str) -> None:
    print(f"[sdegen eval] {msg}", flush=True)


def run_folder(cfg) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.get("output_dir") or f"outputs/eval/{time.strftime('%Y-%m-%d_%H-%M-%S')}")


def resolve_device(name) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(str(name))


def wanted_metrics(metric) -> list[str]:
    if OmegaConf.is_list(metric):
        metric = list(metric)
    names = [str(m).strip() for m in (metric if isinstance(metric, (list, tuple)) else str(metric).split(","))]
    if "all" in names:
        return list(METRICS)
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise SystemExit(f"sdegen: error: metric={','.join(bad)} is not known; use fid, is, bpd or all")
    return names


def _instantiate(node, **kwargs):
    import hydra.utils

    node = OmegaConf.create(node) if not isinstance(node, DictConfig) else node
    return hydra.utils.instantiate(node, _convert_="all", **kwargs)


def build_context(cfg, device) -> Context:
    """Score model, SDE and data module: ``sdegen.tasks.sample.setup(cfg)`` when it exists, else built here."""
    try:
        setup = importlib.import_module("sdegen.tasks.sample").setup
    except (ImportError, AttributeError):
        setup = None
    if setup is not None:
        ctx = setup(cfg)

        def get(name):
            return ctx.get(name) if isinstance(ctx, Mapping) else getattr(ctx, name, None)

        model = get("score_fn") or get("model")
        if model is not None and get("sde") is not None and get("data") is not None:
            return Context(model, get("sde"), get("data"), torch.device(get("device") or device))
    from ..config import build_sde

    if cfg.get("ckpt"):
        from ..training.checkpoint import load_score_model

        model, plain = load_score_model(cfg.ckpt, map_location=device)
        sde, data = _instantiate(plain["sde"]), _instantiate(plain["data"])
    else:
        sde, data = build_sde(cfg), _instantiate(cfg.data)
        model = _instantiate(cfg.model, sde=sde, data=data)
    return Context(model.to(device).eval(), sde, data, device)


def data_from_samples_folder(cfg, samples_path: Path):
    """The data config the samples were made with (``<folder>/.hydra/config.yaml``), else ``cfg.data``."""
    hydra_cfg = samples_path.parent / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():
        saved = OmegaConf.load(hydra_cfg)
        if "data" in saved:
            log(f"data config from {hydra_cfg}")
            return _instantiate(saved.data)
    return _instantiate(cfg.data)


# --- samples ----------------------------------------------------------------------------------------
def load_samples(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"sdegen: error: samples={path} does not exist (give the samples.npz of `sdegen sample`)")
    with np.load(path) as f:
        if "x" not in f.files and "images" not in f.files:
            raise SystemExit(f"sdegen: error: {path} has neither 'x' nor 'images' (arrays: {f.files})")
        return {k: f[k] for k in f.files}


def generate(ctx: Context, cfg) -> dict:
    from ..samplers import describe, sample

    n, bs = int(cfg.eval.n_samples), int(cfg.eval.batch_size)
    g = torch.Generator(device=ctx.device).manual_seed(int(cfg.seed))
    xs, nfe, t0 = [], 0, time.time()
    for i in range(0, n, bs):
        b = min(bs, n - i)
        log(f"sampling {i + b}/{n} with {describe(cfg.sampler)}")
        res = sample(cfg.sampler, ctx.score_fn, ctx.sde, (b, *ctx.data.shape), generator=g, device=ctx.device,
                     progress=True)
        xs.append(ctx.data.unscale(res.x).detach().cpu().float())
        nfe = res.nfe
    x = torch.cat(xs)
    out = {"x": x.numpy(), "nfe": np.asarray(nfe), "seconds": np.asarray(time.time() - t0)}
    if getattr(ctx.data, "is_image", False):
        from .features import as_uint8_rgb

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


def fid_is_metrics(cfg, data, samples: dict, wanted, device) -> dict:
    from . import fid_is
    from .features import RawFeatures, as_uint8_rgb, load_inception

    ev = cfg.eval
    kind = ev.features
    if kind == "auto":
        kind = "inception" if getattr(data, "is_image", False) else "raw"
    out: dict = {"features": kind}
    n_ref, split, bs = int(ev.ref_size), str(ev.ref_split), int(ev.batch_size)
    if kind == "raw":
        fake = samples_model_space(data, samples).double()
        feature, real_fn = RawFeatures(fake[0].numel()), (lambda: reference_x(data, n_ref, split, cfg.seed).double())
    elif kind == "inception":
        fake = as_uint8_rgb(sample_pixels(data, samples))
        real_fn = (lambda: as_uint8_rgb(data.unscale(reference_x(data, n_ref, split, cfg.seed))))
        feature = load_inception("pool", ev.inception_weights) if "fid" in wanted else None
    else:
        raise SystemExit(f"sdegen: error: eval.features={kind} is not known; use auto, inception or raw")
    out["n_samples"] = int(fake.shape[0])
    if "fid" in wanted:
        name = kind if kind == "raw" or not ev.inception_weights else f"inception-{Path(ev.inception_weights).stem}"
        # key the cache on the reference images themselves (cheap to load, unlike their features), so
        # that two data sets can never share statistics, whatever config they were loaded with
        real = real_fn()
        real_fn = (lambda: real)  # noqa: E731
        digest = hashlib.sha1(real.cpu().contiguous().numpy().tobytes()).hexdigest()[:12]
        key_cfg = {"data_class": type(data).__name__, "reference_sha1": digest}
        cache = Path(ev.cache_dir) / fid_is.cache_key(type(data).__name__, split, n_ref, name, key_cfg)
        cached = cache.is_file()
        log(f"FID ({kind} features) against {real.shape[0]} '{split}' samples"
            + (f" (the split has fewer than eval.ref_size={n_ref})" if real.shape[0] < n_ref else "")
            + (f", cached in {cache}" if cached else ""))
        out["n_reference"] = int(real.shape[0])
        out["fid"] = fid_is.frechet_distance(feature, None, fake, cache_file=cache, real_fn=real_fn,
                                             batch_size=bs, device=device, progress=True)
        out["fid_reference"] = str(cache)
    if "is" in wanted:
        from .features import is_torchscript

        explicit = "is" in (cfg.metric if isinstance(cfg.metric, (list, tuple)) or OmegaConf.is_list(cfg.metric)
                            else [cfg.metric])
        if kind == "inception" and ev.inception_weights and is_torchscript(Path(ev.inception_weights).expanduser()) \
                and not explicit:
            logits = None  # metric=all: a pool3-only TorchScript Inception gives FID, not IS; don't fail
            log("IS skipped: the TorchScript Inception has no logits (pass torch-fidelity's .pth for IS; "
                "eval.classifier_ckpt gives the classifier-space IS)")
        elif kind == "inception":
            logits = load_inception("logits", ev.inception_weights)
        elif getattr(data, "mixture", None) is not None:  # exact class posterior p(y|x) of the test bed
            mixture = data.mixture
            logits = fid_is.LogitsModule(lambda x: mixture.class_log_posterior(x))
        else:
            logits = None
            log("IS skipped: raw features have no classes (use eval.features=inception or eval.classifier_ckpt)")
        if logits is not None:
            out["is_mean"], out["is_std"] = fid_is.inception_score(logits, fake, splits=int(ev.is_splits),
                                                                   batch_size=bs, device=device, seed=int(cfg.seed))
    return out


def classifier_metrics(cfg, data, samples: dict, device) -> dict:
    """``eval.classifier_ckpt``: the domain metrics of ``classifier_domain_metrics``."""
    from ..training.classifier import load_classifier

    ev = cfg.eval
    classifier, plain = load_classifier(ev.classifier_ckpt, map_location=device)
    return classifier_domain_metrics(classifier, data, samples, t=_eps_of(plain, cfg), n_ref=int(ev.ref_size),
                                     split=str(ev.ref_split), seed=int(cfg.seed), batch_size=int(ev.batch_size),
                                     splits=int(ev.is_splits), device=device)


def _eps_of(plain, cfg) -> float:
    try:
        return float(plain["sde"]["eps"])
    except (KeyError, TypeError):
        return float(cfg.sde.eps)


def classifier_domain_metrics(classifier, data, samples: dict, *, t: float, n_ref: int, split: str = "test",
                              seed: int = 0, batch_size: int = 250, splits: int = 10, device="cpu") -> dict:
    """The offline domain metric: ``classifier_fid``, ``classifier_is_mean/std`` and, when the
    samples carry labels (class-guided generation), ``classifier_accuracy``.  Both real and
    generated data are mapped to model space with ``data.scale`` before the classifier sees them."""
    from . import fid_is
    from .features import ClassifierFeatures, infer_num_features

    classifier = classifier.to(device).eval()
    fake = samples_model_space(data, samples)
    real = reference_x(data, n_ref, split, seed).float()
    feats = ClassifierFeatures(classifier, t, "features")
    infer_num_features(feats, fake.to(device))
    out = {"classifier_fid": fid_is.frechet_distance(feats, real, fake, batch_size=batch_size, device=device)}
    logits = ClassifierFeatures(classifier, t, "logits")
    out["classifier_is_mean"], out["classifier_is_std"] = fid_is.inception_score(
        logits, fake, splits=splits, batch_size=batch_size, device=device, seed=seed)
    labels = sample_labels(samples)
    if labels is not None:
        with torch.no_grad():
            pred = torch.cat([logits(b.to(device)).argmax(1).cpu() for b in fake.split(batch_size)])
        out["classifier_accuracy"] = float((pred == labels).double().mean())
    return out


def bpd_metrics(cfg, ctx: Context, run_dir: Path) -> dict:
    from .likelihood import bpd_of_batch

    b = cfg.eval.bpd
    is_image = bool(getattr(ctx.data, "is_image", False))
    dtype = {"auto": torch.float32 if is_image else torch.float64, "float32": torch.float32,
             "float64": torch.float64}[str(b.dtype)]
    x = reference_x(ctx.data, int(b.n), str(b.split), int(cfg.seed) + 1)  # model space
    if is_image:
        x = ctx.data.unscale(x)  # pixels in [0, 1]: bpd_of_batch recovers the 8-bit values and dequantises
    g = torch.Generator(device=ctx.device).manual_seed(int(cfg.seed))
    solver = dict(trace=b.trace, exact_max_dim=int(b.exact_max_dim), probe=b.probe, n_probes=int(b.n_probes),
                  method=b.method, rtol=float(b.rtol), atol=float(b.atol), eps=b.eps)
    bpds, logps, nfes = [], [], []
    from tqdm.auto import tqdm

    for xb in tqdm(x.split(int(b.batch_size)), desc="bits/dim (PF-ODE)"):
        bpd, res = bpd_of_batch(ctx.score_fn, ctx.sde, xb.to(ctx.device), data=ctx.data if is_image else None,
                                is_image=is_image,
                                generator=g, dtype=dtype, **solver)
        bpds.append(bpd.cpu()), logps.append(res.logp.cpu()), nfes.append(res.nfe)
    bpd, logp = torch.cat(bpds).double(), torch.cat(logps).double()
    np.savez(run_dir / "bpd_per_sample.npz", x=x.cpu().numpy(), bpd=bpd.numpy(), logp=logp.numpy(),
             nfe=np.asarray(nfes))
    out = {"bpd": float(bpd.mean()), "bpd_std": float(bpd.std()), "bpd_sem": float(bpd.std() / math.sqrt(len(bpd))),
           "bpd_n": int(len(bpd)), "bpd_nfe": float(np.mean(nfes))}
    mixture = getattr(ctx.data, "mixture", None)
    if mixture is not None and not is_image:  # the test bed: the exact answer, for comparison
        out["bpd_exact"] = float(-mixture.log_prob(x).mean() / (x[0].numel() * math.log(2)))
    return out


# --- loggers ---------------------------------------------------------------------------------------
def build_loggers(cfg) -> list:
    try:
        return list(importlib.import_module("sdegen.training.loggers").build_loggers(cfg) or [])
    except (ImportError, AttributeError):
        pass
    loggers = []
    for node in (cfg.get("logger") or {}).values():
        if isinstance(node, Mapping) and "_target_" in node:
            try:
                loggers.append(_instantiate(node))
            except Exception as err:  # a logger must never stop the evaluation
                log(f"logger {node['_target_']} unavailable: {err}")
    return loggers


def log_metrics(cfg, metrics: dict) -> None:
    numbers = {f"eval/{k}": float(v) for k, v in metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
    for logger in build_loggers(cfg):
        try:
            logger.log_metrics(numbers, step=0)
            logger.save()
            logger.finalize("success")
        except Exception as err:
            log(f"logging to {type(logger).__name__} failed: {err}")


# --- the command -----------------------------------------------------------------------------------
def evaluate(cfg) -> dict:
    """Compute the requested metrics; returns the metrics dict (also written to metrics.json)."""
    torch.manual_seed(int(cfg.seed))
    wanted = wanted_metrics(cfg.get("metric", "all"))
    run_dir = run_folder(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.get("device"))
    samples_path = cfg.get("samples") or cfg.eval.get("samples")
    t0 = time.time()
    metrics: dict = {"metric": ",".join(wanted), "ckpt": cfg.get("ckpt"), "samples": samples_path}

    ctx = None
    if "bpd" in wanted or not samples_path:
        try:
            ctx = build_context(cfg, device)
        except Exception as err:
            if samples_path is None or "bpd" in wanted:
                raise SystemExit(f"sdegen: error: cannot build the score model ({err}); give ckpt=PATH "
                                 f"(or model=gmm data=gmm for the test bed)") from err
    need_samples = "fid" in wanted or "is" in wanted or bool(cfg.eval.classifier_ckpt)
    samples = data = None
    if not need_samples:
        pass
    elif samples_path:
        samples = load_samples(Path(samples_path))
        data = data_from_samples_folder(cfg, Path(samples_path))
    else:
        samples, data = generate(ctx, cfg), ctx.data
        metrics["sampler_nfe"], metrics["sampling_seconds"] = int(samples["nfe"]), float(samples["seconds"])
        np.savez(run_dir / "samples.npz", **samples)

    if "fid" in wanted or "is" in wanted:
        metrics.update(fid_is_metrics(cfg, data, samples, wanted, device))
    if cfg.eval.classifier_ckpt:
        metrics.update(classifier_metrics(cfg, data, samples, device))
    if "bpd" in wanted:
        metrics.update(bpd_metrics(cfg, ctx, run_dir))
    metrics["seconds"] = time.time() - t0

    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    log_metrics(cfg, metrics)
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()
             if k in ("fid", "is_mean", "is_std", "bpd", "bpd_exact", "bpd_nfe", "classifier_fid", "classifier_accuracy")}
    log(f"{shown} -> {run_dir / 'metrics.json'}")
    return metrics


def main(cfg):
    task = cfg.get("task") or {}
    if task.get("name") == "classifier":
        return importlib.import_module("sdegen.training.classifier").evaluate(cfg)
    return evaluate(cfg)
