"""Samplers: plain functions ``(score_fn, sde, x, timesteps, ...) -> SampleResult``.

``build(sampler_cfg)`` turns a sampler config (``configs/sampler/<name>.yaml``) into a ``Sampler``: every
``auto`` value resolved from its step-count preset (``samplers.presets``) and every key checked, once.
``Sampler.sample(...)`` draws the prior, builds the time grid and calls the sampler function named by
``_target_`` (a dotted path, so a new sampler is one file plus one YAML).  ``sample(sampler_cfg, ...)``
does both in one call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from ..errors import UserError
from . import presets
from .base import CountingScore, SampleResult, final_denoise, run_steps, tweedie_denoise
from .grids import DEFAULT_DATA_STD, GRIDS, time_grid

#: keys of a sampler config read by the driver; every other key is an option of the algorithm
DRIVER_KEYS = ("steps", "eps", "end_noise", "start_noise", "grid", "grid_options", "data_std", "denoise", "resample")

#: the value that asks the step-count preset (``samplers.presets``) for a setting
AUTO = "auto"


def plain_config(sampler_cfg) -> dict:
    """A sampler config as plain Python data: an OmegaConf node, or a dict copied from one (``dict(cfg)``
    keeps its lists and mappings as OmegaConf nodes), becomes dicts and lists all the way down."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(sampler_cfg):
        return OmegaConf.to_container(sampler_cfg, resolve=True)
    return {
        k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        for k, v in dict(sampler_cfg).items()
    }


def resolve_auto(sampler_cfg) -> dict:
    """The sampler config with every ``auto`` value filled in from its step-count preset.

    ``samplers.presets`` holds one table per sampler function (the config's ``_target_``): an ``auto``
    key takes the value of the first row with ``steps <= max_steps``.  So a sampler's defaults can
    depend on the step count (``dpm_solver``: σ/α 10 → 0.02 up to 12 steps, 20 → 0.005 for 13–24,
    80 → 0.005 from 25) while an explicit ``sampler.end_noise=0.002`` always wins.  ``data_std=auto``
    stays: it is the model's or the data's std, known only when sampling (``resolved(cfg, data_std)``)."""
    cfg = plain_config(sampler_cfg)
    if "by_steps" in cfg:
        raise UserError(
            "sampler.by_steps is not a key: what auto means at each step count is in "
            "sdegen/samplers/presets.py; set the key itself instead (e.g. sampler.end_noise=0.002)"
        )
    auto_keys = [k for k, v in cfg.items() if isinstance(v, str) and v == AUTO and k != "data_std"]
    if not auto_keys:
        return cfg
    target = cfg.get("_target_")
    if presets.table(target) is None:
        raise UserError(
            f"sampler.{auto_keys[0]}=auto: {presets.target_name(target)} has no step-count preset "
            f"(sdegen/samplers/presets.py); set sampler.{auto_keys[0]} explicitly"
        )
    steps = cfg.get("steps", 1000)
    if not isinstance(steps, (int, float)) or isinstance(steps, bool):
        raise UserError(f"sampler.steps must be an integer >= 1, got {steps!r}")
    row = presets.preset(target, steps)
    if "grid_options" in auto_keys and "grid" not in auto_keys:
        # a row's grid options belong to the row's grid: an explicit `sampler.grid=logsnr` runs with its defaults
        auto_keys.remove("grid_options")
        cfg["grid_options"] = {}
    for key in auto_keys:
        if key not in row:
            raise UserError(
                f"sampler.{key}=auto: the preset of {presets.target_name(target)} has no value for it "
                f"at steps={steps}; set sampler.{key} explicitly"
            )
        cfg[key] = row[key]
    return cfg


def resolved(sampler_cfg, data_std: float | None = None) -> tuple[dict, list[str]]:
    """``(the config that runs, the keys that were auto)``: every ``auto`` resolved from the step-count
    preset; ``data_std`` too when the grid follows the data's scale and the caller knows the std (the
    checkpoint's or the data's), else it stays ``auto`` (read when sampling)."""
    sampler = build(sampler_cfg, data_std)
    return sampler.values, list(sampler.was_auto)


def summary(sampler_cfg, data_std: float | None = None) -> str:
    """What will run, in two lines: every key of the resolved config (``*`` marks the ones that were
    ``auto``), then which step count chose them (``sdegen sample ... dry_run=true`` prints it)."""
    return build(sampler_cfg, data_std).summary()


def _summary(cfg: dict, was_auto) -> str:
    name = describe(cfg).split(" (", 1)[0]

    def text(value):
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {text(v)}" for k, v in value.items()) + "}"
        if isinstance(value, float):
            return f"{value:g}"
        return "null" if value is None else str(value)

    keys = [k for k in cfg if k != "_target_"]
    from_preset = [k for k in keys if k in was_auto and k != "data_std" and cfg[k] != AUTO]
    line = " ".join(f"{k}={text(cfg[k])}{'*' if k in from_preset else ''}" for k in keys)
    notes = []
    if from_preset:
        notes.append(f"* = auto, the preset for {cfg.get('steps', 1000)} steps")
    if "data_std" in was_auto and cfg.get("data_std") != AUTO:
        notes.append("data_std: the checkpoint's or the data's std")
    elif cfg.get("data_std") == AUTO and _needs_data_std(cfg):
        notes.append("data_std=auto: the checkpoint's or the data's std, read when sampling")
    return f"sampler {name}: {line}" + (f"\n  ({'; '.join(notes)})" if notes else "")


def resolve(target):
    """A sampler function from a dotted path ('sdegen.samplers.em.sample_em') or the callable itself."""
    if callable(target):
        return target
    from hydra.utils import get_method

    path = str(target)  # only sdegen's own sampler functions (runtime.registry checks configs read from files)
    try:
        fn = get_method(path) if path.startswith(__name__ + ".") else None
    except (ImportError, AttributeError, ValueError) as err:  # not importable, or not a function
        raise UserError(f"sampler._target_={target!r} is not an importable function ({err})") from None
    if getattr(fn, "__module__", None) != path.rsplit(".", 1)[0]:
        raise UserError(f"sampler._target_={target!r} is not a sampler function of {__name__}")
    return fn


def _values(sampler_cfg) -> dict:
    """The settings of a ``Sampler`` (resolved when it was built), or of a config with its ``auto`` resolved."""
    return sampler_cfg.config if isinstance(sampler_cfg, Sampler) else resolve_auto(sampler_cfg)


def end_time(sde, sampler_cfg) -> float:
    """The sampler's end time: ``eps``, or the t where σ(t)/α(t) = ``end_noise`` when that is set."""
    return _end_time(sde, _values(sampler_cfg))


def _end_time(sde, sampler_cfg: dict) -> float:
    end_noise = sampler_cfg.get("end_noise")
    if end_noise is None:
        eps = float(sampler_cfg.get("eps", 1e-3))
        if not 0 < eps < float(sde.T):
            raise UserError(f"sampler.eps must satisfy 0 < eps < T = {float(sde.T):g}, got {eps:g}")
        return eps
    if end_noise <= 0:
        raise UserError(f"sampler.end_noise must be > 0 (a noise-to-signal ratio σ/α), got {end_noise}")
    lam = -torch.log(torch.tensor(float(end_noise), dtype=torch.float64))
    t = float(sde.t_from_log_snr(lam))
    return min(max(t, float(sde.eps)), float(sde.T))


def start_time(sde, sampler_cfg) -> float:
    """The sampler's start time: T, or the t where σ(t)/α(t) = ``start_noise`` when that is set and
    below σ(T)/α(T) (EDM's σ_max = 80 cap, Karras et al. 2022, Sec. 5: linear VP ends at σ/α ≈ 152,
    where the extra noise levels cost steps and change nothing)."""
    return _start_time(sde, _values(sampler_cfg))


def _start_time(sde, sampler_cfg: dict) -> float:
    start_noise = sampler_cfg.get("start_noise")
    T = float(sde.T)
    if start_noise is None:
        return T
    if start_noise <= 0:
        raise UserError(f"sampler.start_noise must be > 0 (a noise-to-signal ratio σ/α), got {start_noise}")
    t = float(sde.t_from_log_snr(-torch.log(torch.tensor(float(start_noise), dtype=torch.float64))))
    return min(t, T)


def _checked(config: dict) -> tuple:
    """``(function, driver settings, algorithm options)`` of a resolved sampler config (no ``auto`` left).

    A sampler config is flat: ``_target_`` names the function, the ``DRIVER_KEYS`` say how to drive it
    and every other key is one of the function's keyword arguments.  An option the function does not
    take is a ``UserError`` naming the valid ones (a typo never passes silently)."""
    cfg = dict(config)
    if "_target_" not in cfg:
        raise UserError(f"a sampler config needs _target_ (the sampler function's dotted path); got keys {sorted(cfg)}")
    fn = resolve(cfg.pop("_target_"))
    cfg.pop("_partial_", None)
    driver = {k: cfg.pop(k) for k in DRIVER_KEYS if k in cfg}
    accepted = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    fixed = {
        "score_fn",
        "sde",
        "x",
        "timesteps",
        "step_hook",
        "generator",
        "snapshot_every",
        "resample",
        "denoise",
        "progress",
    }
    valid = sorted(k for k, p in accepted.items() if k not in fixed and p.kind is p.KEYWORD_ONLY)
    unknown = [k for k in cfg if k not in accepted or k in fixed]
    if unknown and not takes_any:
        raise UserError(
            f"sampler.{unknown[0]} is not an option of {getattr(fn, '__name__', fn)}; valid options: "
            f"{', '.join(list(DRIVER_KEYS) + valid)}"
        )
    steps = int(driver.get("steps", 1000))
    if steps < 1:
        raise UserError(f"sampler.steps must be >= 1, got {steps}")
    grid = driver.get("grid", "uniform")
    if grid not in GRIDS:
        raise UserError(f"sampler.grid={grid!r} is not a time grid; choose one of {', '.join(sorted(GRIDS))}")
    grid_options = driver.get("grid_options") or {}
    if not isinstance(grid_options, dict):
        raise UserError(f"sampler.grid_options must be a mapping of the grid's options, got {grid_options!r}")
    grid_params = [
        k
        for k, p in inspect.signature(GRIDS[grid]).parameters.items()
        if k not in ("sde", "steps", "eps", "start", "data_std") and p.default is not p.empty
    ]
    if "data_std" in grid_options:
        raise UserError(
            "the data's std is sampler.data_std (a number, or auto: the checkpoint's or the data's), not a grid option"
        )
    unknown_grid = sorted(k for k in grid_options if k not in grid_params)
    if unknown_grid:
        raise UserError(
            f"sampler.grid_options.{unknown_grid[0]} is not an option of the {grid} grid; "
            f"valid: {', '.join(grid_params) or 'none'}"
        )
    data_std = driver.get("data_std", AUTO)
    if (
        data_std is not None
        and data_std != AUTO
        and (not isinstance(data_std, (int, float)) or isinstance(data_std, bool) or not data_std > 0)
    ):
        raise UserError(
            f"sampler.data_std must be auto or a number > 0 (the data's root-mean-square "
            f"per-dimension std), got {data_std!r}"
        )
    driver["denoise"] = denoise_mode(driver.get("denoise", True))  # true | false | "half", checked once
    if int(driver.get("resample", 1)) < 1:
        raise UserError(f"sampler.resample must be >= 1, got {driver.get('resample')}")
    return fn, driver, cfg


def split_config(sampler_cfg) -> tuple:
    """``(function, driver settings, algorithm options)`` of a sampler config (``build`` checks it)."""
    sampler = build(sampler_cfg)
    return sampler.fn, dict(sampler.driver), dict(sampler.options)


@dataclass(frozen=True)
class Sampler:
    """A sampler ready to run, made by ``build``: ``config`` is what runs (every ``auto`` resolved from the
    step-count preset; a run folder's ``config.yaml`` stores it), ``was_auto`` the keys that were ``auto``,
    ``fn``/``driver``/``options`` the checked parts of ``config`` (``split_config``) and ``data_std`` the
    data's std for a grid that follows it (None when the grid does not, or the std is not known)."""

    config: dict
    was_auto: tuple
    fn: Callable = field(repr=False)
    driver: dict = field(repr=False)
    options: dict = field(repr=False)
    data_std: float | None = None

    @property
    def steps(self) -> int:
        return int(self.driver.get("steps", 1000))

    @property
    def values(self) -> dict:
        """``config`` with the data's std filled in where the grid takes it."""
        return self.config if self.data_std is None else {**self.config, "data_std": self.data_std}

    @property
    def needs_data_std(self) -> bool:
        """Whether the grid follows the data's scale and ``data_std`` is still to be supplied."""
        return _needs_data_std(self.config)

    def with_data_std(self, data_std: float | None) -> Sampler:
        """This sampler with the data's std (kept only where the grid follows it)."""
        if data_std is None or not self.needs_data_std:
            return self
        return replace(self, data_std=float(data_std))

    def with_options(self, **values) -> Sampler:
        """This sampler with some keys changed (e.g. ``resample=5``), built and checked again."""
        return build({**self.config, **values}, self.data_std)

    def describe(self) -> str:
        """``dpm_solver (20 steps)``."""
        return describe(self.config)

    def settings(self) -> str:
        """Where the grid runs (``σ/α 20 → 0.006, logsnr grid``), see ``settings``."""
        return _settings(self.config, self.was_auto, self.data_std)

    def summary(self) -> str:
        """Every key of ``config`` in one line, the ones that were ``auto`` marked (``dry_run=true``)."""
        return _summary(self.values, self.was_auto)

    def start_time(self, sde) -> float:
        return _start_time(sde, self.driver)

    def end_time(self, sde) -> float:
        return _end_time(sde, self.driver)

    def sample(
        self,
        score_fn,
        sde,
        shape,
        *,
        step_hook=None,
        generator=None,
        device="cpu",
        x_init=None,
        snapshot_every=0,
        progress=False,
    ) -> SampleResult:
        """Draw ``shape`` samples: the prior at the start time (``x_init`` when given), the time grid from
        the driver settings, then the sampler function with its options (see ``sample``)."""
        driver = self.driver
        t_start, t_end = self.start_time(sde), self.end_time(sde)
        if not t_end < t_start:
            raise UserError(
                f"sampler.start_noise={driver.get('start_noise')} starts below the end time "
                f"(end_noise/eps); raise start_noise"
            )
        grid, grid_options = driver.get("grid", "uniform"), dict(driver.get("grid_options") or {})
        if _follows_data_scale(grid):
            grid_options["data_std"] = data_scale(driver, self.data_std)[0]
        timesteps = time_grid(
            sde, self.steps, t_end, grid, start=None if t_start == float(sde.T) else t_start, **grid_options
        )
        x = x_init if x_init is not None else sde.prior_sample(shape, generator=generator, device=device)
        if t_start < float(sde.T):  # x ~ N(0, σ(T)²) rescaled to N(0, σ(t_start)²) (EDM: x ~ N(0, σ_max² I))
            x = x * (float(sde.marginal_std(torch.tensor(t_start, dtype=torch.float64))) / sde.prior_std)
        return self.fn(
            score_fn,
            sde,
            x,
            timesteps,
            step_hook=step_hook,
            generator=generator,
            snapshot_every=snapshot_every,
            resample=int(driver.get("resample", 1)),
            denoise=driver["denoise"],
            progress=progress,
            **self.options,
        )


def build(sampler_cfg, data_std: float | None = None) -> Sampler:
    """The ``Sampler`` of a config (an OmegaConf node or a mapping; a ``Sampler`` is returned as it is):
    ``auto`` values resolved from the step-count preset and every key checked, here and only here.
    ``data_std`` is the data's std (the checkpoint's or the data's) for grids that follow it."""
    if isinstance(sampler_cfg, Sampler):
        return sampler_cfg.with_data_std(data_std)
    raw = plain_config(sampler_cfg)
    config = resolve_auto(raw)
    fn, driver, options = _checked(config)
    was_auto = tuple(k for k, v in raw.items() if isinstance(v, str) and v == AUTO)
    return Sampler(config, was_auto, fn, driver, options).with_data_std(data_std)


def describe(sampler_cfg) -> str:
    """A short name of a sampler config for logs and figure titles, e.g. ``dpm_solver (20 steps)``."""
    if isinstance(sampler_cfg, Sampler):
        sampler_cfg = sampler_cfg.config
    target = sampler_cfg.get("_target_", "?")
    name = getattr(target, "__name__", str(target).rsplit(".", 1)[-1]).removeprefix("sample_")
    return f"{name} ({sampler_cfg.get('steps', '?')} steps)"


def settings(sampler_cfg, data_std: float | None = None) -> str:
    """Where the grid runs, ``auto`` resolved: ``σ/α 20 → 0.006, logsnr grid`` (beside ``describe``), plus
    any algorithm option the step count chose (``corrector false``); for a grid that follows the data's
    scale, the centre it took from ``data_std`` (as in ``sample``)."""
    return build(sampler_cfg, data_std).settings()


def _settings(cfg: dict, was_auto, data_std: float | None) -> str:
    parts = []
    start, end = cfg.get("start_noise"), cfg.get("end_noise")
    if start is not None or end is not None:
        first = "T" if start is None else f"{start:g}"
        last = f"t = {cfg.get('eps', 1e-3):g}" if end is None else f"{end:g}"
        parts.append(f"σ/α {first} → {last}")
    if cfg.get("grid"):
        options = cfg.get("grid_options") or {}
        parts.append(
            f"{cfg['grid']} grid" + (f" ({', '.join(f'{k} {v}' for k, v in options.items())})" if options else "")
        )
        if _follows_data_scale(cfg["grid"]) and "center" not in options:
            scale, source = data_scale(cfg, data_std)
            default = inspect.signature(GRIDS[cfg["grid"]]).parameters["center_std"].default
            center_std = options.get("center_std", default)
            parts.append(f"focus at σ/α {center_std * scale:.3g} = {center_std:g} × data std {scale:.3g} ({source})")
    if cfg.get("denoise") == "half":
        parts.append("half-step end")
    # the algorithm's own options that the step count chose (unipc's corrector)
    chosen = [k for k in was_auto if k not in DRIVER_KEYS and k in cfg]
    parts += [f"{k} {str(cfg[k]).lower() if isinstance(cfg[k], bool) else cfg[k]}" for k in chosen]
    return ", ".join(parts) or "default grid"


def _follows_data_scale(grid: str) -> bool:
    """Whether the named grid places its steps by the data's std (takes ``data_std``: the focus grid)."""
    return grid in GRIDS and "data_std" in inspect.signature(GRIDS[grid]).parameters


def needs_data_std(sampler_cfg) -> bool:
    """Whether sampling with this config reads the data's std (a grid that follows the data's scale, with
    ``sampler.data_std=auto`` and no pinned centre): callers look it up only then."""
    return _needs_data_std(_values(sampler_cfg))


def _needs_data_std(cfg: dict) -> bool:
    value = cfg.get("data_std", AUTO)
    return (
        _follows_data_scale(cfg.get("grid", "uniform"))
        and "center" not in (cfg.get("grid_options") or {})
        and (value is None or value == AUTO)
    )


def data_scale(sampler_cfg, data_std: float | None = None) -> tuple[float, str]:
    """``(σ_data, where it came from)``: ``sampler.data_std`` when it is a number, else the ``data_std`` the
    caller knows (the checkpoint's, or the data's: ``runtime.setup.Setup.data_std``), else EDM's 0.5."""
    value = (sampler_cfg.config if isinstance(sampler_cfg, Sampler) else sampler_cfg).get("data_std", AUTO)
    if value is not None and value != AUTO:
        return float(value), "sampler.data_std"
    if data_std is not None:
        return float(data_std), "the checkpoint's or the data's"
    return DEFAULT_DATA_STD, "not known: EDM's default"


def sample(
    sampler_cfg,
    score_fn,
    sde,
    shape,
    *,
    step_hook=None,
    generator=None,
    device="cpu",
    x_init=None,
    snapshot_every=0,
    progress=False,
    data_std: float | None = None,
) -> SampleResult:
    """Draw ``shape`` samples with the sampler described by ``sampler_cfg`` (a ``Sampler`` or a config,
    built here by ``build``).

    ``sampler_cfg`` is a flat mapping (``configs/sampler/<name>.yaml``): ``_target_`` (the function),
    ``steps``, ``eps``, ``end_noise``, ``start_noise``, ``grid``, ``denoise``, ``resample`` and the
    algorithm's own options.  ``start_noise`` (σ/α, e.g. EDM's 80) starts the grid at the t where
    σ/α equals it instead of at T, from the prior noise rescaled to σ(t_start).  ``end_noise``, when set,
    replaces ``eps`` by the time at which the noise-to-signal ratio
    σ(t)/α(t) equals it, so that a grid ends at the same noise level on every SDE (at a fixed
    t = 1e-3, sub-VP's σ/α is 1e-4 but VP's is 1e-2: fast solvers would spend their few steps on
    noise levels that change nothing).  ``data_std`` is the data's root-mean-square per-dimension std when
    the caller knows it (``sampler.data_std=auto``): the grids that follow the data's scale (``focus``) take it.
    """
    return build(sampler_cfg, data_std).sample(
        score_fn,
        sde,
        shape,
        step_hook=step_hook,
        generator=generator,
        device=device,
        x_init=x_init,
        snapshot_every=snapshot_every,
        progress=progress,
    )


def denoise_mode(value):
    """``sampler.denoise``: true (Tweedie's last step), false (none) or half (``final_denoise``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "half"):
        return {"true": True, "false": False, "half": "half"}[value.lower()]
    raise UserError(f"sampler.denoise must be true, false or half, got {value!r}")


__all__ = [
    "SampleResult",
    "CountingScore",
    "run_steps",
    "tweedie_denoise",
    "final_denoise",
    "denoise_mode",
    "time_grid",
    "sample",
    "build",
    "Sampler",
    "resolve",
    "start_time",
    "end_time",
    "data_scale",
    "needs_data_std",
    "split_config",
    "resolve_auto",
    "resolved",
    "summary",
    "plain_config",
    "settings",
    "describe",
    "DRIVER_KEYS",
    "AUTO",
]
