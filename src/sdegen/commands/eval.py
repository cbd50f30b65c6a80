"""``sdegen eval metric=fid|kid|pr|is|bpd|gap|all``: metrics of a checkpoint, of the exact test bed or of a samples.npz.

* Samples: ``samples=PATH/samples.npz`` (from ``sdegen sample``; read and checked by
  ``runtime.samples_file``), or ``n_samples`` drawn with the configured sampler (and ``guidance=``) from
  ``ckpt=PATH`` (or from ``model=gmm data=gmm``, no checkpoint).
* Everything a metric needs (feature network, reference images, classifier checkpoint, digit judge) is
  found BEFORE sampling (``metrics.inputs.prerequisites``): a missing piece is a one-line ``UserError``.
* The metrics themselves: ``metrics.suite.run_metrics`` (FID, KID, precision/recall, IS, the test bed's
  exact log-likelihood gap, ``eval.classifier_ckpt``, ``eval.judge`` and bits/dim, which needs a model:
  with ``samples=`` it needs ``ckpt=``).
Writes ``metrics.json`` (the metrics that ran; ``skipped``: those ``metric=all`` could not run, and why),
``bpd_per_sample.npz`` and the drawn ``samples.npz`` in the run folder, and logs the numbers to the
configured loggers (CSV/W&B).  With ``task=classifier`` it evaluates a time-dependent classifier instead
(accuracy over noise levels).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from .. import viz
from ..errors import UserError
from ..metrics import inputs
from ..metrics.suite import metrics_that_ran, run_metrics
from ..runtime import samples_file
from ..runtime.checkpoints import load_classifier
from ..runtime.generation import generate
from ..runtime.loggers import log_metrics
from ..runtime.rundir import cache_dir
from ..runtime.rundir import run_dir as current_run_dir
from ..runtime.setup import Setup, build_data, build_setup, guided_score
from ..training.classifier import accuracy_curve

#: the figures the log line shows
SHOWN = (
    "fid",
    "kid_mean",
    "kid_std",
    "precision",
    "recall",
    "is_mean",
    "is_std",
    "bpd",
    "bpd_se_rms",
    "bpd_exact",
    "bpd_nfe",
    "gap",
    "gap_se",
    "classifier_fid",
    "classifier_kid_mean",
    "classifier_accuracy",
    "judge_frechet",
    "judge_confident",
    "judge_balance",
    "judge_is",
    "judge_nn_min",
    "judge_nn_median",
    "judge_copies",
)
log = logging.getLogger("sdegen")


def generate_samples(setup: Setup, score_fn, cfg) -> tuple[dict, float]:
    """(the arrays of a samples file, NFE per sample): ``n_samples`` drawn with the configured sampler."""
    start = time.time()
    gen = generate(
        setup,
        score_fn,
        setup.sampler(cfg.sampler),
        int(cfg.n_samples),
        batch_size=int(cfg.batch_size),
        generator=setup.generator(),
        progress=bool(cfg.get("progress", True)),
    )
    return samples_file.samples_arrays(gen, setup.data, time.time() - start), float(gen.nfe)


def check_metric_options(cfg) -> None:
    """The ranges of the sample-metric and bits/dim options (the rest: ``runtime.config.check_config``)."""
    for key, low, optional in (
        ("eval.kid_subsets", 1, False),
        ("eval.kid_subset_size", 2, True),
        ("eval.pr_k", 1, False),
        ("eval.bpd.n_probes", 1, False),
    ):
        value = OmegaConf.select(cfg, key, default=None)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{key} must be an integer >= {low}, got {value!r}")


def drop(wanted: list, skipped: dict, explicit, name: str, reason: str) -> None:
    """``name`` cannot run: an error when ``metric=`` names it, else it is left out and said why."""
    if name in explicit:
        raise UserError(f"metric={name} {reason}")
    if name in wanted:
        wanted.remove(name)
        skipped[name] = reason


def classifier_of(cfg):
    """``eval.classifier_ckpt``: (the classifier, its time t = eps) or None."""
    if not cfg.eval.classifier_ckpt:
        return None
    model, plain = load_classifier(cfg.eval.classifier_ckpt, map_location="cpu")
    try:
        return model, float(plain["sde"]["eps"])
    except (KeyError, TypeError):
        return model, float(cfg.sde.eps)


def evaluate(cfg) -> dict:
    """Compute the requested metrics; returns the metrics dict (also written to metrics.json).
    The score model is built once (for generation and bits/dim); ``samples=`` needs none."""
    torch.manual_seed(int(cfg.seed))
    ev, metric = cfg.eval, cfg.get("metric", "all")
    wanted, explicit = inputs.wanted_metrics(metric), inputs.named_metrics(metric)
    check_metric_options(cfg)
    samples_path = cfg.get("samples")
    guidance = str((cfg.get("guidance") or {}).get("name", "none"))
    if samples_path and guidance != "none":
        raise UserError(
            f"guidance={guidance} applies when eval draws the samples; samples= are already drawn "
            f"(drop guidance=, or drop samples= to generate guided samples)"
        )
    skipped: dict = {}
    if samples_path and not cfg.get("ckpt"):
        drop(
            wanted,
            skipped,
            explicit,
            "bpd",
            "is a model's bits/dim on held-out data, and samples= bring no model: "
            "give the model too (ckpt=PATH), or drop samples=",
        )
    out = current_run_dir(cfg)
    t0 = time.time()
    need_samples = (
        any(m in wanted for m in (*inputs.FEATURE_METRICS, "is", "gap"))
        or bool(ev.classifier_ckpt)
        or bool(ev.get("judge"))
    )
    setup = build_setup(cfg) if ("bpd" in wanted or not samples_path) else None
    device = setup.device if setup is not None else torch.device("cpu")
    samples, data, pre, sampling = None, setup.data if setup is not None else None, None, {}
    if need_samples:
        if samples_path:
            samples = samples_file.read_samples(samples_path)
            data = samples_file.data_of_samples(cfg, Path(samples_path))
            samples_file.check_samples(samples, data, samples_path)
        if not inputs.has_exact_density(data):
            drop(
                wanted,
                skipped,
                explicit,
                "gap",
                f"needs samples of the Gaussian-mixture test bed (data=gmm), whose "
                f"log-density is exact; {type(data).__name__} has none (use fid, "
                f"kid, pr, is or bpd)",
            )
        pre = inputs.prerequisites(
            ev, data, wanted, seed=int(cfg.seed), explicit=explicit, classifier=classifier_of(cfg)
        )  # fail fast: network, reference, classifier
        needs = inputs.samples_needed([m for m in wanted if m not in pre["skipped"]], ev)
        if samples_path:
            samples_file.check_samples(samples, data, samples_path, needs)
        else:
            for what, least in needs.items():
                if int(cfg.n_samples) < least:
                    raise UserError(f"n_samples={cfg.n_samples}: {what} needs at least {least} samples")
            samples, nfe = generate_samples(setup, guided_score(cfg, setup), cfg)
            sampling = {
                "nfe": nfe,
                "nfe_total": int(samples["nfe_total"]),
                "sampling_seconds": float(samples["seconds"]),
            }

    cache = Path(str(ev.cache_dir)).expanduser() if ev.cache_dir else cache_dir("fid_ref")
    model = (setup.score_model, setup.sde) if "bpd" in wanted else None
    computed, per_point = run_metrics(
        wanted,
        data,
        samples,
        pre,
        ev,
        seed=int(cfg.seed),
        batch_size=int(cfg.batch_size),
        device=device,
        progress=bool(cfg.get("progress", True)),
        cache_folder=cache,
        model=model,
    )
    skipped.update((pre or {}).get("skipped", {}))
    metrics = {
        "metric": ",".join(metrics_that_ran(computed)),
        "ckpt": cfg.get("ckpt"),
        "samples": samples_path,
        **sampling,
        **computed,
    }
    if skipped:
        metrics["skipped"] = skipped
    metrics["seconds"] = time.time() - t0
    out.mkdir(parents=True, exist_ok=True)
    if per_point:
        np.savez(out / "bpd_per_sample.npz", **per_point)
    if samples is not None and not samples_path:
        samples_file.write_samples(out / "samples.npz", samples)
    samples_file.write_metrics(out / "metrics.json", metrics)
    log_metrics(cfg, out, metrics, prefix="eval/")
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items() if k in SHOWN}
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
    accuracies = accuracy_curve(
        model, sde, x.float(), torch.as_tensor(y).long(), times, batch_size=int(cfg.batch_size), device=device
    )
    log_snr = [float(sde.log_snr(torch.tensor(t, dtype=torch.float64))) for t in times]
    result = {
        "mean_accuracy": float(np.mean(accuracies)),
        "times": times,
        "accuracy": accuracies,
        "log_snr": log_snr,
        "n": int(x.shape[0]),
        "split": split,
        "sde": plain["sde"].get("_target_"),
        "ckpt": str(cfg.ckpt),
    }
    out = current_run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classifier_accuracy.json").write_text(json.dumps(result, indent=2))
    _plot_curve(result, out / "classifier_accuracy.png")
    log.info(
        f"classifier accuracy (mean over {len(times)} noise levels): {result['mean_accuracy']:.3f}; "
        + ", ".join(f"t={t:.2f}: {a:.3f}" for t, a in zip(times, accuracies))
        + f" -> {out}"
    )
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
