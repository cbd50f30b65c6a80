"""Samplers: plain functions ``(score_fn, sde, x, timesteps, ...) -> SampleResult``.

``sample(...)`` is the driver the commands use: it draws the prior, builds the time grid and
calls the sampler named in the config (``fn`` is a dotted path, so a new sampler is one file
plus one YAML).
"""

from __future__ import annotations

import importlib

import torch

from .base import CountingScore, SampleResult, run_steps, tweedie_denoise
from .grids import time_grid


def resolve(fn):
    """A sampler function from a dotted path ('sdegen.samplers.em.sample_em') or itself."""
    if callable(fn):
        return fn
    module, _, name = str(fn).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot find sampler function {fn!r}: {err}") from None


def end_time(sde, sampler_cfg) -> float:
    """The sampler's end time: ``eps``, or the t where σ(t)/α(t) = ``end_noise`` when that is set."""
    end_noise = sampler_cfg.get("end_noise")
    if end_noise is None:
        return float(sampler_cfg.get("eps", 1e-3))
    if end_noise <= 0:
        raise ValueError(f"sampler.end_noise must be > 0 (a noise-to-signal ratio σ/α), got {end_noise}")
    lam = -torch.log(torch.tensor(float(end_noise), dtype=torch.float64))
    t = float(sde.t_from_log_snr(lam))
    return min(max(t, float(sde.eps)), float(sde.T))


def sample(sampler_cfg, score_fn, sde, shape, *, step_hook=None, generator=None, device="cpu",
           x_init=None, snapshot_every=0, progress=False) -> SampleResult:
    """Draw ``shape`` samples with the sampler described by ``sampler_cfg``.

    ``sampler_cfg`` is a mapping with ``fn`` (dotted path), ``steps``, ``eps``, ``grid`` and the
    algorithm's own ``options``; ``resample`` and ``denoise`` are common options.  ``end_noise``,
    when set, replaces ``eps`` by the time at which the noise-to-signal ratio σ(t)/α(t) equals it,
    so that a grid ends at the same noise level on every SDE (at a fixed t = 1e-3, sub-VP's σ/α
    is 1e-4 but VP's is 1e-2: fast solvers would spend their few steps on noise levels that
    change nothing).
    """
    cfg = dict(sampler_cfg)
    fn = resolve(cfg["fn"])
    timesteps = time_grid(sde, int(cfg.get("steps", 1000)), end_time(sde, cfg), cfg.get("grid", "uniform"))
    x = x_init if x_init is not None else sde.prior_sample(shape, generator=generator, device=device)
    options = dict(cfg.get("options") or {})
    return fn(score_fn, sde, x, timesteps, step_hook=step_hook, generator=generator,
              snapshot_every=snapshot_every, resample=int(cfg.get("resample", 1)),
              denoise=bool(cfg.get("denoise", True)), progress=progress, **options)


__all__ = ["SampleResult", "CountingScore", "run_steps", "tweedie_denoise", "time_grid", "sample", "resolve"]
